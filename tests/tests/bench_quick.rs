//! The benchmark in quick mode (`cargo xtask bench --quick`), so it cannot rot: every part once
//! at small sizes (the flood at 100k too, the smallest set that bans each of its sources by
//! address), through the library, in under a minute. It prints its figures and
//! judges nothing: benchmarks are not pass/fail.

use blocker_tests::{bench, privileged};

#[test]
fn bench_quick() {
    if !privileged("bench_quick") {
        return;
    }
    let out = std::env::temp_dir().join(format!("blocker-bench-quick-{}", std::process::id()));
    let options = bench::Options::new(true, out.clone(), env!("CARGO_BIN_EXE_bench").into());
    let started = std::time::Instant::now();
    let markdown = bench::run(&options).expect("write the report");
    println!("{markdown}");
    for section in ["## 1.", "## 2.", "## 3.", "## 4."] {
        assert!(
            markdown.contains(section),
            "the report has no section {section}"
        );
    }
    assert!(out.join("report.json").is_file(), "no report.json");
    println!("bench_quick: {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&out);
}
