//! Placeholder until the validation benchmarks land.
fn main() {}
