//! `--config FILE` on the three binaries: a file sets any flag, an environment variable beats
//! it, a flag beats both, and a mistake names the file, the line and the key.

use spinneret_tests::TestSite;
use spinneret_tests::binaries::{run_bin, run_engine};
use std::path::Path;

fn s(v: &str) -> String {
    v.to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_flags_under_env_and_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(20).await.expect("site");
    let config = write(
        dir.path(),
        "engine.toml",
        &format!(
            "# every kind of value\nseeds = [\"{}\"]\nmax_pages = 3\nignore_robots = true\nuser_agent = \"configured-bot\"\nper_host = 2\nno_state = true\n",
            site.url("/")
        ),
    );
    let (status, stdout, stderr) = run_bin(
        "engine",
        &[
            s("--config"),
            config.clone(),
            s("--print-config"),
            s("--max_pages=4"),
        ],
        &[("SPINNERET_PER_HOST", "3")],
    )
    .await;
    assert!(status.success(), "{stderr}");
    for line in [
        format!("seed = [\"{}\"]  # file", site.url("/")),
        s("max_pages = \"4\"  # flag"),
        s("per_host = \"3\"  # SPINNERET_PER_HOST"),
        s("ignore_robots = true  # file"),
        s("user_agent = \"configured-bot\"  # file"),
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "{line:?} in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("max_depth = "),
        "an unset flag is not shown: {stdout}"
    );

    // The file's values are the crawl's: its seed, and its page cap under the flag's.
    let run = run_engine(dir.path(), &[s("--config"), config.clone()])
        .await
        .succeeded("a crawl from the file");
    assert_eq!(run.summary()["pages_ok"], 3);
    let run = run_engine(dir.path(), &[s("--config"), config, s("--max_pages=5")])
        .await
        .succeeded("a flag over the file");
    assert_eq!(run.summary()["pages_ok"], 5);
}

#[tokio::test]
async fn an_unknown_key_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for program in ["engine", "worker", "itemsaver"] {
        let config = write(
            dir.path(),
            &format!("{program}.toml"),
            "# a comment\nlog_format = \"text\"\n\nmax_pagez = 5\n",
        );
        let (status, _, stderr) = run_bin(
            program,
            &[s("--config"), config.clone(), s("--print-config")],
            &[],
        )
        .await;
        assert_eq!(status.code(), Some(2), "{program}: {stderr}");
        let expected =
            format!("error: {config}:4: unknown key \"max_pagez\": not a flag of {program}");
        assert_eq!(stderr.trim(), expected, "{program}");
    }
}

#[tokio::test]
async fn the_shipped_config_examples_are_accepted() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for program in ["engine", "worker", "itemsaver"] {
        let file = examples.join(format!("{program}.toml"));
        let (status, stdout, stderr) = run_bin(
            program,
            &[
                s("--config"),
                file.display().to_string(),
                s("--print-config"),
            ],
            &[],
        )
        .await;
        assert!(status.success(), "{program}: {stderr}");
        assert!(stdout.contains("# file"), "{program}: {stdout}");
    }
}
