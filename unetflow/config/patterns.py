"""The patterns config strings must match, and how each is explained when a value does not.

The one place a pattern is stated: the sections (unetflow.config.model) constrain fields with them, the
error wording (unetflow.config.messages) says in words what they ask for.
"""

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
SCRIPT_SAFE_PATTERN = r"^[A-Za-z0-9_.:,=/@+%&|~*()\[\]-]*$"
"""Characters allowed in strings that reach a job script or a command line: no spaces, quotes, `$`, `;`,
back-ticks or line breaks, so a value can never add a line or a command to a SLURM script."""
WALLTIME_PATTERN = r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$"
SLICES_PATTERN = r"^\s*(all|\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*)\s*$"


PATTERN_HINTS = {
    SCRIPT_SAFE_PATTERN: (
        "must be one word of letters, digits and _.:,=/@+%&|~*()[]- (no spaces, quotes, $, ; or line breaks: "
        "it goes into a job script)"
    ),
    SLICES_PATTERN: 'must be slices such as "0-19" or "0,3,5-7" (inclusive ranges), "all", or a list',
    WALLTIME_PATTERN: "must be a time limit such as 02:00:00 or 1-12:00:00 ([days-]hours[:min[:sec]])",
    SHA256_PATTERN: "must be 64 lower-case hexadecimal digits (sha256sum prints them)",
    NAME_PATTERN: "must be letters, digits, _ and - only",
}
