//! The files a mail admin installs from: the example configuration, the systemd unit, the
//! container files and the README's configuration excerpt. They must agree with the daemon
//! (every key they use exists and is valid, every key the daemon accepts is documented, the
//! defaults they show are the real ones) and with each other (paths, capabilities). No
//! privileges needed: everything goes through `blocker check-config` and `show-config`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use blocker::config::DEFAULT_CONFIG_PATH;
use serde_json::Value;

const BLOCKER: &str = env!("CARGO_BIN_EXE_blocker");
/// The example says `api_key: ${API_KEY}`.
const API_KEY: &str = "packaging-test-key";
const EXAMPLE: &str = "packaging/crowdsec-blocker.yaml";
const UNIT: &str = "packaging/blocker.service";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `blocker -c <file> <command>` (with `API_KEY` set); returns (success, stdout+stderr).
fn blocker_on_file(path: &Path, command: &str) -> (bool, String) {
    let out = Command::new(BLOCKER)
        .arg("-c")
        .arg(path)
        .arg(command)
        .env("API_KEY", API_KEY)
        .output()
        .expect("run blocker");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The same on configuration text, written to a throwaway file.
fn blocker_on_text(name: &str, yaml: &str, command: &str) -> (bool, String) {
    let path = std::env::temp_dir().join(format!(
        "blocker-packaging-{}-{name}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, yaml).expect("write config");
    let result = blocker_on_file(&path, command);
    let _ = std::fs::remove_file(&path);
    result
}

/// `show-config` of configuration text: the merged configuration, or a panic naming `what`.
fn show_config(what: &str, yaml: &str) -> String {
    let (ok, out) = blocker_on_text(what, yaml, "show-config");
    assert!(ok, "{what} is not a valid configuration: {out}\n{yaml}");
    out
}

/// `key: value` of a top-level key in `show-config` output.
fn shown<'a>(merged: &'a str, key: &str) -> &'a str {
    merged
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("show-config has no {key}:\n{merged}"))
}

/// The example's active (uncommented) top-level lines for `key`, with their indented
/// continuation lines.
fn active_lines(example: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in example.lines() {
        if line.starts_with(&format!("{key}:")) {
            inside = true;
        } else if inside && !line.starts_with(' ') {
            inside = false;
        }
        if inside {
            out.push(line.to_owned());
        }
    }
    out
}

fn without_key(example: &str, key: &str) -> String {
    let drop = active_lines(example, key);
    let mut out = String::new();
    for line in example.lines() {
        if !drop.iter().any(|d| d == line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn example_config_passes_check_config() {
    let (ok, out) = blocker_on_file(&root().join(EXAMPLE), "check-config");
    assert!(ok, "blocker check-config -c {EXAMPLE}: {out}");
}

/// The installed example with `crowdsec-blocker.yaml.local` beside it, as an admin keeps their
/// changes across upgrades: `show-config` shows the overlay's values over the file's, and a
/// bad overlay is named.
#[test]
fn a_local_overlay_beside_the_example_is_laid_over_it() {
    let dir =
        std::env::temp_dir().join(format!("blocker-packaging-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("crowdsec-blocker.yaml");
    std::fs::write(&config, read(EXAMPLE)).expect("write config");
    let overlay = dir.join("crowdsec-blocker.yaml.local");
    std::fs::write(
        &overlay,
        "ports: [993]\nprometheus:\n  listen_port: 60700\n",
    )
    .expect("write overlay");
    let (ok, merged) = blocker_on_file(&config, "show-config");
    assert!(ok, "show-config with the overlay: {merged}");
    let ports: Vec<&str> = merged
        .lines()
        .skip_while(|l| *l != "ports:")
        .skip(1)
        .take_while(|l| l.starts_with("- "))
        .collect();
    assert_eq!(
        ports,
        ["- 993"],
        "the overlay's list replaces the file's:\n{merged}"
    );
    assert!(
        merged.contains("  listen_port: 60700\n") && merged.contains("  enabled: true\n"),
        "the prometheus mappings merge:\n{merged}"
    );

    std::fs::write(&overlay, "interfaces: eth1\n").expect("write overlay");
    let (ok, out) = blocker_on_file(&config, "check-config");
    assert!(!ok, "a bad overlay passed check-config: {out}");
    assert!(
        out.contains(&format!("invalid configuration file {}: interfaces: a scalar cannot replace the file's sequence", overlay.display())),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

/// Every key the example sets is set to its default (bar the three it must set), so the
/// file tells the truth about what leaving a key out means.
#[test]
fn example_config_shows_the_real_defaults() {
    let example = read(EXAMPLE);
    let minimal: String = ["api_url", "api_key", "interfaces"]
        .iter()
        .flat_map(|key| active_lines(&example, key))
        .map(|line| line + "\n")
        .collect();
    assert_eq!(
        show_config("example", &example),
        show_config("minimal", &minimal),
        "a value in {EXAMPLE} differs from the default it claims to show"
    );
}

/// Every key the daemon accepts, nested ones included, appears in the example (set, or as a
/// commented example).
#[test]
fn example_config_documents_every_key() {
    let example = read(EXAMPLE);
    // show-config leaves out the optional keys that are not set: set each in one variant.
    let with_key = |key: &str| example.replace("api_key: ${API_KEY}", key);
    let variants = [
        format!("{example}ca_cert_path: /etc/ssl/ca.pem\n"),
        with_key("api_key_file: /etc/blocker.key"),
        with_key("cert_path: /c.pem\nkey_path: /k.pem")
            .replace("api_url: http://", "api_url: https://"),
    ];
    let mut keys = BTreeSet::new();
    for (i, variant) in variants.iter().enumerate() {
        for line in show_config(&format!("variant{i}"), variant).lines() {
            let indent = line.len() - line.trim_start().len();
            if let Some((key, _)) = line.trim_start().split_once(':')
                && !key.starts_with('-')
            {
                keys.insert((indent, key.to_owned()));
            }
        }
    }
    assert!(keys.len() > 20, "show-config listed too few keys: {keys:?}");
    let documented = |indent: usize, key: &str| {
        example.lines().any(|line| {
            let line = line.strip_prefix('#').unwrap_or(line);
            line.len() - line.trim_start().len() == indent
                && line.trim_start().starts_with(&format!("{key}:"))
        })
    };
    let missing: Vec<_> = keys
        .iter()
        .filter(|(indent, key)| !documented(*indent, key))
        .collect();
    assert!(
        missing.is_empty(),
        "{EXAMPLE} does not document {missing:?}"
    );
}

/// Uncommenting any commented example in the example gives a valid configuration.
#[test]
fn example_config_commented_examples_are_valid() {
    let example = read(EXAMPLE);
    // `#key: value` starts an example, `#  - item` continues it; prose is `# text`.
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for line in example.lines() {
        let Some(text) = line.strip_prefix('#') else {
            continue;
        };
        if let Some((key, _)) = text.split_once(':')
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            blocks.push((key.to_owned(), vec![text.to_owned()]));
        } else if text.starts_with("  ")
            && let Some((_, lines)) = blocks.last_mut()
        {
            lines.push(text.to_owned());
        }
    }
    let block = |key: &str| {
        blocks.iter().find(|(k, _)| k == key).map_or_else(
            || panic!("{EXAMPLE} has no commented {key} example"),
            |(_, lines)| lines.join("\n") + "\n",
        )
    };
    for (key, lines) in &blocks {
        let yaml = match key.as_str() {
            // The other ways to authenticate replace api_key.
            "api_key_file" => without_key(&example, "api_key") + &lines.join("\n"),
            "cert_path" | "key_path" => {
                (without_key(&example, "api_key") + &block("cert_path") + &block("key_path"))
                    .replace("api_url: http://", "api_url: https://")
            }
            _ => without_key(&example, key) + &lines.join("\n"),
        };
        show_config(&format!("example-{key}"), &yaml);
    }
    assert!(
        blocks.len() >= 8,
        "fewer commented examples than expected: {blocks:?}"
    );
    // The ports examples named in the README's "Add ports".
    assert!(block("ports").contains("4190") && block("ports").contains("443"));
}

/// The README's configuration excerpt is a valid configuration: its keys exist, its values
/// parse.
#[test]
fn readme_config_excerpt_is_valid() {
    let readme = read("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configure"))
        .expect("README has a Configure section");
    let excerpt = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the Configure section has a ```yaml excerpt");
    let (ok, out) = blocker_on_text("readme", excerpt, "check-config");
    assert!(ok, "README's configuration excerpt: {out}\n{excerpt}");
}

/// `[Section] Key=Value` of a unit file; repeated keys keep every value.
fn parse_unit(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            name.clone_into(&mut section);
        } else if let Some((key, value)) = line.split_once('=') {
            entries
                .entry(format!("{section}.{}", key.trim()))
                .or_default()
                .push(value.trim().to_owned());
        } else {
            panic!("{UNIT}: unparsable line {line:?}");
        }
    }
    entries
}

fn one<'a>(unit: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match unit.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{UNIT}: expected one {key}, found {other:?}"),
    }
}

fn unit_capabilities(unit: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    one(unit, "Service.CapabilityBoundingSet")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_unit_runs_the_installed_config_with_its_paths_writable() {
    let unit = parse_unit(&read(UNIT));
    assert_eq!(
        one(&unit, "Service.Type"),
        "notify",
        "the daemon reports READY=1"
    );
    assert_eq!(
        one(&unit, "Service.ExecStart"),
        format!("/usr/bin/blocker run -c {DEFAULT_CONFIG_PATH}")
    );
    let checks = format!("/usr/bin/blocker check-config -c {DEFAULT_CONFIG_PATH}");
    assert!(
        unit["Service.ExecStartPre"].contains(&checks),
        "no ExecStartPre={checks}"
    );
    assert!(matches!(
        one(&unit, "Service.Restart"),
        "always" | "on-failure"
    ));

    // Exactly the capabilities tests/tests/daemon_capabilities.rs proves sufficient.
    let expected: BTreeSet<String> = ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]
        .map(String::from)
        .into();
    assert_eq!(unit_capabilities(&unit), expected);

    // Stopping must leave enforcement in place: nothing detaches on stop.
    for (key, values) in &unit {
        if key.starts_with("Service.ExecStop") {
            assert!(
                !values.iter().any(|v| v.contains("detach")),
                "{key} detaches: {values:?}"
            );
        }
    }

    // With ProtectSystem=strict, what the daemon writes by default must be writable: the
    // state file in the runtime directory, the pins in a ReadWritePaths= entry.
    let defaults = show_config("unit-defaults", &read(EXAMPLE));
    let state_file = Path::new(shown(&defaults, "state_file"));
    let runtime = Path::new("/run").join(one(&unit, "Service.RuntimeDirectory"));
    assert_eq!(
        state_file.parent(),
        Some(runtime.as_path()),
        "state_file is not in RuntimeDirectory="
    );
    let writable: Vec<&str> = unit["Service.ReadWritePaths"]
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    let pins = Path::new(shown(&defaults, "bpffs_dir"));
    assert!(
        writable.iter().any(|w| pins.starts_with(w)),
        "bpffs_dir {} is not in ReadWritePaths={writable:?}",
        pins.display()
    );
    assert_eq!(one(&unit, "Unit.AssertPathIsMountPoint"), "/sys/fs/bpf");
    assert!(pins.starts_with("/sys/fs/bpf"));
}

#[test]
fn container_grants_what_the_unit_grants_and_keeps_pins_on_the_host() {
    let compose = parse_yaml(&read("docker-compose.yml"));
    let blocker = &compose["services"]["blocker"];
    let list = |key: &str| -> BTreeSet<String> {
        blocker[key]
            .as_array()
            .unwrap_or_else(|| panic!("services.blocker.{key} is not a list: {blocker}"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect()
    };
    let from_unit: BTreeSet<String> = unit_capabilities(&parse_unit(&read(UNIT)))
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect();
    assert_eq!(
        list("cap_add"),
        from_unit,
        "cap_add differs from the unit's CapabilityBoundingSet="
    );
    assert_eq!(
        list("cap_add"),
        ["BPF", "NET_ADMIN", "PERFMON"].map(String::from).into()
    );
    assert!(list("cap_drop").contains("ALL"));
    assert_eq!(
        blocker["network_mode"], "host",
        "XDP attaches to the host's interfaces"
    );

    // Volumes, short ("src:dst[:mode]") or long syntax, as (source, target).
    let volumes: Vec<(String, String)> = blocker["volumes"]
        .as_array()
        .expect("services.blocker.volumes")
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                let mut parts = s.split(':');
                (
                    parts.next().unwrap_or_default().to_owned(),
                    parts.next().unwrap_or_default().to_owned(),
                )
            }
            _ => (
                v["source"].as_str().unwrap_or_default().to_owned(),
                v["target"].as_str().unwrap_or_default().to_owned(),
            ),
        })
        .collect();
    assert!(
        volumes.contains(&("/sys/fs/bpf".into(), "/sys/fs/bpf".into())),
        "the host's /sys/fs/bpf must be mounted: {volumes:?}"
    );
    assert!(
        volumes
            .iter()
            .any(|(_, target)| target == DEFAULT_CONFIG_PATH),
        "no configuration mounted at {DEFAULT_CONFIG_PATH}: {volumes:?}"
    );
    // A read-only container still needs the state file's folder.
    if blocker["read_only"] == "true" {
        let defaults = show_config("compose-defaults", &read(EXAMPLE));
        let state_dir = Path::new(shown(&defaults, "state_file"))
            .parent()
            .expect("a folder");
        assert!(
            list("tmpfs").iter().any(|t| state_dir.starts_with(t)),
            "state_file's folder is read-only"
        );
    }

    // The image runs the daemon on the configuration compose mounts.
    let dockerfile = read("Dockerfile");
    let instruction = |name: &str| -> Vec<String> {
        let json = dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("Dockerfile has no {name}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("Dockerfile {name} {json}: {e}"))
    };
    assert_eq!(instruction("ENTRYPOINT"), ["/usr/bin/blocker"]);
    assert_eq!(instruction("CMD"), ["run", "-c", DEFAULT_CONFIG_PATH]);
}

// ---- A YAML subset, enough for docker-compose.yml: block mappings and sequences, flow
// sequences of scalars, block scalars, comments. Scalars stay strings.

fn parse_yaml(text: &str) -> Value {
    let mut parser = Yaml {
        lines: text.lines().map(str::to_owned).collect(),
        pos: 0,
    };
    let value = parser.block(0);
    if let Some(line) = parser.peek() {
        panic!(
            "YAML line {} not understood: {:?}",
            parser.pos + 1,
            parser.lines[line]
        );
    }
    value
}

struct Yaml {
    lines: Vec<String>,
    pos: usize,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Cuts a ` # comment` outside quotes.
fn strip_comment(text: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous == ' ' => return text[..i].trim_end(),
            _ => {}
        }
        previous = c;
    }
    text.trim_end()
}

fn scalar(text: &str) -> Value {
    let text = strip_comment(text).trim();
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return Value::Array(
            inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(scalar)
                .collect(),
        );
    }
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| text.strip_prefix(*q).and_then(|t| t.strip_suffix(*q)))
        .unwrap_or(text);
    Value::String(unquoted.to_owned())
}

impl Yaml {
    /// Index of the next line with content, skipping blank and comment lines.
    fn peek(&mut self) -> Option<usize> {
        while self.pos < self.lines.len() {
            let trimmed = self.lines[self.pos].trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                self.pos += 1;
            } else {
                return Some(self.pos);
            }
        }
        None
    }

    fn block(&mut self, min_indent: usize) -> Value {
        let Some(i) = self.peek() else {
            return Value::Null;
        };
        let indent = indent_of(&self.lines[i]);
        if indent < min_indent {
            return Value::Null;
        }
        if self.lines[i].trim_start().starts_with('-') {
            self.sequence(indent)
        } else {
            self.mapping(indent)
        }
    }

    fn sequence(&mut self, indent: usize) -> Value {
        let mut items = Vec::new();
        while let Some(i) = self.peek() {
            let line = self.lines[i].clone();
            let trimmed = line.trim_start();
            if indent_of(&line) != indent || !trimmed.starts_with('-') {
                break;
            }
            let item = trimmed[1..].trim_start();
            if item.is_empty() {
                self.pos += 1;
                items.push(self.block(indent + 1));
            } else if !item.starts_with(['"', '\'', '['])
                && (item.contains(": ") || item.ends_with(':'))
            {
                // "- key: value": a mapping whose first key sits on the dash's line.
                self.lines[i] = format!("{}{item}", " ".repeat(indent + 2));
                items.push(self.mapping(indent + 2));
            } else {
                self.pos += 1;
                items.push(scalar(item));
            }
        }
        Value::Array(items)
    }

    fn mapping(&mut self, indent: usize) -> Value {
        let mut map = serde_json::Map::new();
        while let Some(i) = self.peek() {
            let line = self.lines[i].clone();
            if indent_of(&line) != indent || line.trim_start().starts_with('-') {
                break;
            }
            let (key, rest) = line.trim().split_once(':').unwrap_or_else(|| {
                panic!("YAML line {}: expected key: value, got {line:?}", i + 1)
            });
            let key = scalar(key).as_str().unwrap_or_default().to_owned();
            let rest = strip_comment(rest).trim().to_owned();
            self.pos += 1;
            let value = if rest.is_empty() {
                // A sequence may sit at its key's indentation.
                match self.peek() {
                    Some(j)
                        if indent_of(&self.lines[j]) == indent
                            && self.lines[j].trim_start().starts_with('-') =>
                    {
                        self.sequence(indent)
                    }
                    _ => self.block(indent + 1),
                }
            } else if rest.starts_with('|') || rest.starts_with('>') {
                let mut body = Vec::new();
                while self.pos < self.lines.len() {
                    let raw = &self.lines[self.pos];
                    if !raw.trim().is_empty() && indent_of(raw) <= indent {
                        break;
                    }
                    body.push(raw.trim().to_owned());
                    self.pos += 1;
                }
                Value::String(body.join("\n"))
            } else {
                scalar(&rest)
            };
            map.insert(key, value);
        }
        Value::Object(map)
    }
}

#[test]
fn yaml_subset_parser() {
    let v = parse_yaml(
        "# c\na:\n  b: [X, 'Y']  # note\n  c:\n    - one\n    - type: bind\n      source: /s\n  d: |\n    line\n  e:\n  - f\nz: \"q # not a comment\"\n",
    );
    assert_eq!(
        v,
        serde_json::json!({
            "a": {"b": ["X", "Y"], "c": ["one", {"type": "bind", "source": "/s"}], "d": "line", "e": ["f"]},
            "z": "q # not a comment"
        })
    );
}
