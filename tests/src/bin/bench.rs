//! `bench [--quick] [--out DIR] [--only 1,2,3,4]`: blocker's benchmark (see
//! `blocker_tests::bench`), as root. `cargo xtask bench` builds and runs it.

use std::{path::PathBuf, process::ExitCode};

use blocker_tests::bench;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut options = bench::Options::new(
        false,
        PathBuf::from("target/bench"),
        std::env::current_exe().expect("the bench executable's path"),
    );
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--out" => options.out_dir = args.next().expect("--out DIR").into(),
            "--only" => {
                options.parts = args
                    .next()
                    .expect("--only PARTS")
                    .split(',')
                    .map(|p| p.parse().expect("parts are 1, 2, 3 or 4"))
                    .collect();
            }
            "--apply-child" => {
                let url = args.next().expect("--apply-child URL");
                bench::control::apply_child(&url);
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!(
                    "bench: unknown argument {other:?}\nusage: bench [--quick] [--out DIR] [--only 1,2,3,4]"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: needs root (BPF, network namespaces)");
        return ExitCode::FAILURE;
    }
    match bench::run(&options) {
        Ok(markdown) => {
            println!("{markdown}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: writing the report: {e}");
            ExitCode::FAILURE
        }
    }
}
