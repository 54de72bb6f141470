//! What a user sees when the configuration is wrong: one line naming the culprit, exit 1, and
//! nothing touched in the kernel.

use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

const BLOCKER: &str = env!("CARGO_BIN_EXE_blocker");

/// Runs `blocker -c <config> <args>` on a config made of `yaml`; returns (success, stderr).
fn blocker(yaml: &str, args: &[&str]) -> (bool, String) {
    blocker_under(&[], yaml, args)
}

/// [`blocker`], run by `wrapper` (`setpriv ...`) if not empty.
fn blocker_under(wrapper: &[&str], yaml: &str, args: &[&str]) -> (bool, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("blocker-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("blocker.yaml");
    std::fs::write(&config, yaml).expect("config");
    let (program, program_args) = match wrapper {
        [program, rest @ ..] => (*program, [rest, &[BLOCKER]].concat()),
        [] => (BLOCKER, Vec::new()),
    };
    let out = Command::new(program)
        .args(program_args)
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
    // Older blockers kept single addresses in a BPF hash under the same name, and, before the
    // tables' hash keys, settings of 16 bytes.
    for (name, map) in [
        (
            "BANNED_V4_ADDRS",
            ["hash", "key", "4", "value", "16", "entries", "16"],
        ),
        (
            "SETTINGS",
            ["array", "key", "4", "value", "16", "entries", "1"],
        ),
    ] {
        let dir = format!(
            "/sys/fs/bpf/blocker-cli-test-oldpins-{}-{name}",
            std::process::id()
        );
        std::fs::create_dir_all(&dir).expect("pin dir on bpffs");
        let pin = format!("{dir}/{name}");
        let made = Command::new("bpftool")
            .args(["map", "create", &pin, "type"])
            .args(map)
            .args(["name", name])
            .status()
            .expect("run bpftool");
        assert!(made.success(), "bpftool made the old {name}");
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
        assert_eq!(left, [name], "nothing else was pinned");
    }
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

/// Another program on the interface's XDP hook (`xdp-filter`, an anti-flood filter, a blocker with
/// another `bpffs_dir`): the start fails naming it and how to see and remove it, whether it
/// was attached over netlink (`ip link`, libbpf, libxdp) or through a BPF link, and does not
/// "fall back to generic" first, which could only fail too.
#[test]
fn another_program_on_the_xdp_hook_is_named() {
    use blocker_tests::bench::bpf::{RawXdp, XDP_PASS, attach_xdp, returning};
    if !blocker_tests::privileged("another_program_on_the_xdp_hook_is_named") {
        return;
    }
    let ns = blocker_tests::netns::Netns::new(format!("blkcli{}-hook", std::process::id()));
    let ip = |args: &[&str]| blocker_tests::netns::ip(&[&["-n", &ns.name], args].concat());
    ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ]);
    ip(&["link", "set", "eth0", "up"]);
    ip(&["link", "set", "eth1", "up"]);
    let other = RawXdp::load("othertool", &returning(XDP_PASS)).expect("load a program");
    let pin = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/blocker-cli-test-othertool-{}",
        std::process::id()
    ));
    other.pin(&pin).expect("pin it");
    // Unpinned at once, or when `ip` fails: `ip link` only needs it to attach.
    let attached = std::panic::catch_unwind(|| {
        // Not `ip -n`, which mounts a sysfs of the namespace's own over /sys, and its
        // /sys/fs/bpf with it.
        let pinned = pin.to_str().expect("utf-8");
        ns.run(|| {
            blocker_tests::netns::ip(&["link", "set", "dev", "eth0", "xdpdrv", "pinned", pinned]);
        });
    });
    std::fs::remove_file(&pin).expect("unpin");
    attached.expect("ip link set dev eth0 xdpdrv pinned");
    let link = ns.run(|| {
        let eth1 = blocker::loader::ifindex("eth1").expect("eth1");
        attach_xdp(std::os::fd::AsFd::as_fd(&other), eth1).expect("attach through a link")
    });

    let config = |interface: &str, pins: &blocker_tests::PinDir| {
        format!(
            "api_url: http://127.0.0.1:8080/\napi_key: k\ninterfaces: [{interface}]\nbpffs_dir: {}\nprometheus:\n  enabled: false\n",
            pins.path().display()
        )
    };
    for interface in ["eth0", "eth1"] {
        let pins = blocker_tests::PinDir::new(&format!("cli-hook-{interface}"));
        let yaml = config(interface, &pins);
        let (ok, stderr) = ns.run(|| blocker(&yaml, &["run"]));
        assert!(!ok, "{interface}: blocker ran beside another program");
        let want = format!("interface {interface} already has XDP program ");
        assert!(
            stderr.contains(&want)
                && stderr.contains("\"othertool\" (native), not attached by this blocker")
                && stderr.contains(&format!("ip link set dev {interface} xdp off")),
            "{interface}: {stderr}"
        );
        assert!(
            !stderr.contains("falling back to generic"),
            "{interface}: {stderr}"
        );
        println!("{interface}: {}", stderr.trim());
    }
    // With the unit's capabilities only, the program's name cannot be read (listing programs
    // takes CAP_SYS_ADMIN): its id, and how to look it up, are still there.
    let pins = blocker_tests::PinDir::new("cli-hook-caps");
    let yaml = config("eth0", &pins);
    let setpriv = [
        "setpriv",
        "--bounding-set=-all,+bpf,+net_admin,+perfmon",
        "--inh-caps=-all",
        "--",
    ];
    let (ok, stderr) = ns.run(|| blocker_under(&setpriv, &yaml, &["run"]));
    assert!(!ok, "unit capabilities: blocker ran beside another program");
    let id = stderr
        .split("already has XDP program ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unit capabilities: {stderr}"));
    assert!(
        stderr.contains(&format!("XDP program {id} (native)"))
            && stderr.contains(&format!("`bpftool prog show id {id}` shows it")),
        "unit capabilities: {stderr}"
    );
    println!("eth0, unit capabilities: {}", stderr.trim());
    drop(link);
}
