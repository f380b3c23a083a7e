//! `minimal`: the smallest useful program, for measuring the binary size (BENCHMARKS.md, 7).
//! Spawn a resolver, wait for the first resolution, print the addresses.
//!
//! ```sh
//! cargo run --example minimal -- kubernetes:///echo.prod:grpc
//! cargo build --profile size --example minimal   # opt-level "z", LTO, one codegen unit, stripped
//! ```

use std::time::Duration;

fn main() {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubernetes:///echo.default:grpc".to_string());
    let resolver = match kuberesolver::Resolver::spawn(&target) {
        Ok(resolver) => resolver,
        Err(e) => {
            eprintln!("{target}: {e}");
            std::process::exit(1);
        }
    };
    match resolver.wait_ready(Duration::from_secs(5)) {
        Ok(snapshot) => println!("{:?}", snapshot.addresses()),
        Err(e) => {
            eprintln!("{target}: {e}");
            std::process::exit(1);
        }
    }
}
