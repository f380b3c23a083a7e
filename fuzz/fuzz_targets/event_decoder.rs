//! Any bytes in any chunking: the decoder never panics, and the chunking never changes what
//! comes out. The first bytes choose the chunk sizes; the rest is the stream.
#![no_main]

use kuberesolver::fuzzing::decode_stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = data.split_at(data.len().min(4));
    let max_line = 4096;
    let whole = decode_stream(stream, &[u8::MAX], max_line);
    let chunked = decode_stream(stream, sizes, max_line);
    let bytewise = decode_stream(stream, &[1], max_line);
    // An over-long line may be detected at a different point, but only when one exists.
    if !whole.iter().any(|l| l == "too long") {
        assert_eq!(whole, chunked);
        assert_eq!(whole, bytewise);
    }
});
