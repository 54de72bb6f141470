fn main() {
    blocker::cli::main();
}
