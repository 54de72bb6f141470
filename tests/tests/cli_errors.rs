//! What a user sees when the configuration is wrong: one line naming the culprit, exit 1, and
//! nothing touched in the kernel.

use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

const BLOCKER: &str = env!("CARGO_BIN_EXE_blocker");

/// Runs `blocker -c <config> <args>` on a config made of `yaml`; returns (success, stderr).
fn blocker(yaml: &str, args: &[&str]) -> (bool, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("blocker-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("blocker.yaml");
    std::fs::write(&config, yaml).expect("config");
    let out = Command::new(BLOCKER)
        .arg("-c")
        .arg(&config)
        .args(args)
        .output()
        .expect("run blocker");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const VALID: &str = "api_url: http://127.0.0.1:8080/\napi_key: k\ninterfaces: [eth0]\n";

#[test]
fn config_errors_name_the_key_and_the_value() {
    for (yaml, culprit) in [
        (format!("{VALID}bogus_key: 1\n"), "bogus_key"),
        (
            format!("{VALID}update_frequency: 10 parsecs\n"),
            "10 parsecs",
        ),
        (
            format!("{VALID}allowlist: [203.0.113.0/33]\n"),
            "203.0.113.0/33",
        ),
        (format!("{VALID}mode: nftables\n"), "nftables"),
        (format!("{VALID}ports: [25, 70000]\n"), "ports"),
        (
            "api_url: http://127.0.0.1:8080/\ninterfaces: [eth0]\n".to_owned(),
            "api_key",
        ),
        // The TLS files are read by check-config too, as `run` reads them before loading.
        (
            "api_url: https://127.0.0.1:8080/\ncert_path: /nonexistent/blocker.pem\nkey_path: /nonexistent/blocker-key.pem\ninterfaces: [eth0]\n".to_owned(),
            "/nonexistent/blocker.pem",
        ),
        (
            format!(
                "{VALID}allowlist: [{}]\n",
                (0..4097u16)
                    .map(|i| format!("'2001:db8:{i:x}::/48'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "4097 IPv6",
        ),
    ] {
        let (ok, stderr) = blocker(&yaml, &["check-config"]);
        assert!(!ok, "config accepted: {yaml}");
        assert!(
            stderr.contains(culprit),
            "error for {culprit:?} does not name it: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let (ok, stderr) = blocker(VALID, &["check-config"]);
    assert!(ok, "a minimal config is valid: {stderr}");
}

#[test]
fn a_missing_interface_is_named_before_anything_is_loaded() {
    let yaml = "api_url: http://127.0.0.1:8080/\napi_key: k\ninterfaces: [nosuch0]\nbpffs_dir: /sys/fs/bpf/blocker-cli-test-never-created\nprometheus:\n  enabled: false\n";
    let (ok, stderr) = blocker(yaml, &["run"]);
    assert!(!ok);
    assert!(
        stderr.contains("interface nosuch0 does not exist"),
        "{stderr}"
    );
    assert!(
        !std::path::Path::new("/sys/fs/bpf/blocker-cli-test-never-created").exists(),
        "nothing pinned"
    );
}

#[test]
fn a_pin_folder_off_bpffs_is_named() {
    let dir = std::env::temp_dir().join(format!("blocker-cli-notbpf-{}", std::process::id()));
    let yaml = format!(
        "api_url: http://127.0.0.1:9/\napi_key: k\ninterfaces: [lo]\nbpffs_dir: {}\nprometheus:\n  enabled: false\nusage_metrics:\n  enabled: false\n",
        dir.display()
    );
    let (ok, stderr) = blocker(&yaml, &["run"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "bpffs_dir {} is not on a BPF filesystem",
            dir.display()
        )),
        "{stderr}"
    );
}

#[test]
fn only_commands_that_talk_to_lapi_need_the_api_key_variable() {
    let yaml = "api_url: http://127.0.0.1:8080/\napi_key: ${BLOCKER_TEST_NEVER_SET}\ninterfaces: [eth0]\nbpffs_dir: /sys/fs/bpf/blocker-cli-test-none\n";
    let (ok, stderr) = blocker(yaml, &["check-config"]);
    assert!(
        !ok && stderr.contains("BLOCKER_TEST_NEVER_SET"),
        "check-config names the variable: {stderr}"
    );
    let (ok, stderr) = blocker(yaml, &["list"]);
    assert!(!ok, "nothing is pinned there");
    assert!(
        !stderr.contains("BLOCKER_TEST_NEVER_SET"),
        "list does not need the key: {stderr}"
    );
    assert!(
        stderr.contains("pinned map"),
        "list explains what is missing: {stderr}"
    );
}

#[test]
fn pins_from_an_older_layout_are_named_and_left_alone() {
    if !blocker_tests::privileged("pins_from_an_older_layout_are_named_and_left_alone") {
        return;
    }
    // An older blocker kept single addresses in a BPF hash under the same name.
    let dir = format!(
        "/sys/fs/bpf/blocker-cli-test-oldpins-{}",
        std::process::id()
    );
    std::fs::create_dir_all(&dir).expect("pin dir on bpffs");
    let pin = format!("{dir}/BANNED_V4_ADDRS");
    let made = Command::new("bpftool")
        .args([
            "map", "create", &pin, "type", "hash", "key", "4", "value", "16",
        ])
        .args(["entries", "16", "name", "BANNED_V4_ADDRS"])
        .status()
        .expect("run bpftool");
    assert!(made.success(), "bpftool made the old map");
    let yaml = format!(
        "api_url: http://127.0.0.1:9/\napi_key: k\ninterfaces: [lo]\nbpffs_dir: {dir}\nprometheus:\n  enabled: false\nusage_metrics:\n  enabled: false\n"
    );
    let (ok, stderr) = blocker(&yaml, &["run"]);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("pin dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let _ = std::fs::remove_file(&pin);
    let _ = std::fs::remove_dir(&dir);
    assert!(!ok, "the daemon refused to start: {stderr}");
    assert!(
        stderr.contains(&format!("the pinned map {pin} has another layout"))
            && stderr.contains("blocker detach"),
        "{stderr}"
    );
    assert_eq!(left, ["BANNED_V4_ADDRS"], "nothing else was pinned");
}

#[test]
fn two_names_of_one_interface_are_named_before_anything_is_loaded() {
    if !blocker_tests::privileged("two_names_of_one_interface_are_named_before_anything_is_loaded")
    {
        return;
    }
    let ns = blocker_tests::netns::Netns::new(format!("blkcli{}-alt", std::process::id()));
    blocker_tests::netns::ip(&[
        "-n", &ns.name, "link", "property", "add", "dev", "lo", "altname", "mailnic0",
    ]);
    let pins = "/sys/fs/bpf/blocker-cli-test-altname-never-created";
    let yaml = format!(
        "api_url: http://127.0.0.1:8080/\napi_key: k\ninterfaces: [lo, mailnic0]\nbpffs_dir: {pins}\nprometheus:\n  enabled: false\n"
    );
    let (ok, stderr) = ns.run(|| blocker(&yaml, &["run"]));
    assert!(!ok);
    assert!(
        stderr.contains("interfaces lo and mailnic0 are names of one interface"),
        "{stderr}"
    );
    assert!(!std::path::Path::new(pins).exists(), "nothing pinned");
}
