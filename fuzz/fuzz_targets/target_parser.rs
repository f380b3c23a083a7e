//! Any string: parsing never panics, and every target that parses round-trips through Display.
#![no_main]

use kuberesolver::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for scheme in ["kubernetes", "k8s"] {
        if let Ok(target) = Target::parse_with_scheme(text, scheme) {
            let again = Target::parse_with_scheme(&target.to_string(), target.scheme());
            assert_eq!(again.as_ref(), Ok(&target), "round trip of {text:?}");
        }
    }
});
