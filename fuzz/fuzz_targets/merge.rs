//! Arbitrary JSON as an Endpoints list and as an EndpointSlice list: decoding and merging
//! never panic, and resolutions are sorted and de-duplicated.
#![no_main]

use kuberesolver::fuzzing::merge_list;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = merge_list(data);
});
