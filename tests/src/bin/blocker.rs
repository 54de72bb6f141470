//! The real `blocker` command line, built inside this package so integration tests can run it
//! as a separate process (`CARGO_BIN_EXE_blocker`): kill it, restart it, limit its capabilities.
fn main() {
    blocker::cli::main();
}
