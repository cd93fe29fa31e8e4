//! Seeds the dev stack of the test fixture into an emulator and writes a
//! `migrations.toml` pointing at it — what `scripts/demo` migrates.
//!
//! `cargo run --example seed_dev -- <endpoint> <config-out> [journal-dir]`

#[path = "../tests/support/fixture.rs"]
mod fixture;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: seed_dev <endpoint> <config-out> [journal-dir]");
        std::process::exit(2);
    };
    if !endpoint.starts_with("http://127.") && !endpoint.starts_with("http://localhost") {
        eprintln!("seed_dev only seeds a local emulator, not {endpoint}");
        std::process::exit(2);
    }
    let stack = fixture::seed(endpoint, &fixture::Options::default()).await;
    let reference =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations.toml")).expect("read migrations.toml");
    let mut text = reference.replace("vpc-0a1b2c3d4e5f", &stack.vpc_id);
    if let Some(dir) = rest.first() {
        text = text.replace("journal = \".paymig\"", &format!("journal = \"{dir}\""));
    }
    std::fs::write(out, text).expect("write config");
    println!("seeded dev VPC {} ({} subnets) and the dev stack; config: {out}", stack.vpc_id, stack.subnets.len());
}
