"""The configuration: one typed model of every section (`model`; the volume sections in `volumes`), the split
(`split`), loading and merging config files (`load`), the wording of errors (`messages`) and the JSON schema
generated from the model (`schema`)."""
