"""Where volumes live: a `Location` is a local path or a URL (s3://, gs://, https://, file://) read and
written in place, with the ecosystem's credential chains and never a secret in a config, log or job script.

    place = Location.of("s3://lab-em/cortex.zarr", StoreOptions(endpoint_url="https://s3.lab.example"))
    store = place.zarr_store(read_only=True)   # zarr-python reads its chunks concurrently, retried
    spec = place.kvstore()                      # tensorstore's view of the same place (N5, precomputed)

`options` holds what a config may say about a store (anon, endpoint_url, profile); the credentials
themselves come from the standard chains (AWS_* variables, ~/.aws, instance roles; Google's application
default credentials). `errors` turns what a store answers into one InputError naming the problem and what to
set; `retry` retries transient failures with backoff and counts requests.
"""

from unetflow.stores.errors import kind_of, store_error, transient
from unetflow.stores.location import REMOTE_SCHEMES, Location, StoreOptions, is_url, scheme_of

__all__ = [
    "REMOTE_SCHEMES",
    "Location",
    "StoreOptions",
    "is_url",
    "kind_of",
    "scheme_of",
    "store_error",
    "transient",
]
