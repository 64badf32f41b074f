//! The `airtext` command line, driven through `airtext_client::cli::run`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::Value;

fn run(args: &[&str]) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec!["airtext"];
    argv.extend_from_slice(args);
    let code = airtext_client::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn json(args: &[&str]) -> Value {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn segments_json_has_the_contract_fields() {
    let v = json(&["segments", "--json", &"a".repeat(161)]);
    assert_eq!(v["encoding"], "gsm7");
    assert_eq!(v["segments"], 2);
    assert_eq!(v["parts"][0].as_str().unwrap().len(), 153);
    assert_eq!(v["parts"][1], "a".repeat(8));
    let v = json(&["segments", "--json", "héllo 😀"]);
    assert_eq!(v["encoding"], "ucs2");
    assert_eq!(v["segments"], 1);
    assert_eq!(v["parts"][0], "héllo 😀");
}

#[test]
fn segments_text_output() {
    let (code, out, _) = run(&["segments", "Hello €"]);
    assert_eq!(code, 0);
    assert!(out.contains("encoding: gsm7\nsegments: 1\n"), "{out}");
    assert!(out.contains("part 1/1: Hello €"), "{out}");
}

#[test]
fn encode_submit_then_decode() {
    let text = "€".repeat(100);
    let v = json(&[
        "pdu",
        "encode-submit",
        "--to",
        "+14155550100",
        "--json",
        &text,
    ]);
    let pdus = v["pdus"].as_array().unwrap();
    assert_eq!(pdus.len(), 2);
    let mut joined = String::new();
    for (i, p) in pdus.iter().enumerate() {
        let hex = p["hex"].as_str().unwrap();
        assert!(hex.starts_with("00"));
        assert_eq!(
            p["tpdu_length"].as_u64().unwrap() as usize,
            hex.len() / 2 - 1
        );
        let d = json(&["pdu", "decode", "--json", hex]);
        assert_eq!(d["type"], "submit");
        assert_eq!(d["to"], "+14155550100");
        assert_eq!(d["timestamp"], Value::Null);
        assert_eq!(d["concat"]["total"], 2);
        assert_eq!(d["concat"]["seq"], i + 1);
        assert_eq!(d["concat"]["ref"], 0);
        joined.push_str(d["text"].as_str().unwrap());
    }
    assert_eq!(joined, text);
}

#[test]
fn decode_deliver_json() {
    let d = json(&[
        "pdu",
        "decode",
        "--json",
        "0791136200000000040B911346610089F60000208062917314080CC8F71D14969741F977FD07",
    ]);
    assert_eq!(d["type"], "deliver");
    assert_eq!(d["from"], "+31641600986");
    assert_eq!(d["to"], Value::Null);
    assert_eq!(d["text"], "How are you?");
    assert_eq!(d["timestamp"], "2002-08-26T19:37:41+00:00");
    assert_eq!(d["concat"], Value::Null);
}

#[test]
fn decode_status_report_json() {
    let d = json(&[
        "pdu",
        "decode",
        "--json",
        "00062A0B914151550501F0423050410395404230504113504000",
    ]);
    assert_eq!(d["type"], "status-report");
    assert_eq!(d["to"], "+14155550100");
    assert_eq!(d["status_class"], "delivered");
}

#[test]
fn exit_codes() {
    let (code, out, err) = run(&["pdu", "decode", "0011"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("airtext: error: "));
    let (code, _, _) = run(&["pdu", "encode-submit", "--to", "@alice", "hi"]);
    assert_eq!(code, 1);
    let (code, _, err) = run(&["segments"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(&["nonsense"]);
    assert_eq!(code, 2);
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("segments"));
}

#[test]
fn national_number_with_region() {
    let v = json(&[
        "pdu",
        "encode-submit",
        "--to",
        "(415) 555-0100",
        "--region",
        "US",
        "--json",
        "hi",
    ]);
    let hex = v["pdus"][0]["hex"].as_str().unwrap();
    let d = json(&["pdu", "decode", "--json", hex]);
    assert_eq!(d["to"], "+14155550100");
}

/// Every command, as `airtext a b`: the groups (`airtext numbers`) and the commands in them.
fn every_command() -> Vec<(String, clap::Command)> {
    use clap::CommandFactory;
    fn walk(prefix: &str, command: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let path = format!("{prefix} {}", sub.get_name());
            out.push((path.clone(), sub.clone()));
            walk(&path, sub, out);
        }
    }
    let mut out = Vec::new();
    walk("airtext", &airtext_client::cli::Cli::command(), &mut out);
    out
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let commands = every_command();
    assert!(commands.len() > 25, "{}", commands.len());
    for (path, command) in commands {
        let after = command
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(
            after.contains("Example") && after.contains("airtext "),
            "`{path} --help` gives no example"
        );
    }
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for line in ["Examples:", "Exit codes:", "3  queued", "4  the gateway"] {
        assert!(out.contains(line), "{line:?} missing from --help:\n{out}");
    }
    let (code, out, _) = run(&["send", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("airtext send @bob"), "{out}");
}

#[test]
fn docs_cli_md_lists_every_command() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md")).unwrap();
    for (path, _) in every_command() {
        assert!(
            docs.contains(&format!("`{path}")),
            "docs/cli.md does not list `{path}`"
        );
    }
}

#[test]
fn completions_for_each_shell_and_a_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        for word in ["airtext", "identities", "release", "set-name", "offline"] {
            assert!(out.contains(word), "{shell}: {word} missing");
        }
    }
    let (code, _, _) = run(&["completions", "tcsh-or-so"]);
    assert_eq!(code, 2);
    let (code, out, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(".ie") || out.contains(".TH airtext"),
        "{out}"
    );
    assert!(out.contains("conversations"), "{out}");
    let (code, out, err) = run(&["man", "numbers", "release"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("airtext\\-numbers\\-release"), "{out}");
    assert!(out.contains("quarantine"), "{out}");
    let (code, _, err) = run(&["man", "nonsense"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn offline_is_refused_by_commands_that_need_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, _, err) = run(&[
        "--data-dir",
        data_dir,
        "--gateway",
        "http://127.0.0.1:9",
        "--offline",
        "account",
        "show",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--offline only applies"), "{err}");
}
