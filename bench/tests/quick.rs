//! The benchmark keeps working: a small run ends with an exact report (no timing asserted).

use std::process::Command;

#[test]
fn quick_bench_writes_an_exact_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--quick", "--pages", "300", "--out"])
        .arg(&out)
        .status()
        .expect("run bench");
    assert!(status.success(), "bench failed");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("json");
    for key in [
        "server_raw_pages_per_s",
        "parse_ceiling_pages_per_s",
        "inprocess_pages_per_s",
        "distributed_pages_per_s",
        "cpu_ms_per_page",
        "rpc_calls_per_page",
        "rpc_bytes_per_page",
        "latency_bound_pages_per_s",
        "latency_bound_ideal_pages_per_s",
        "seen_bytes_per_url",
        "itemsaver_items_per_s",
        "ratio_distributed_to_inprocess",
        "ratio_inprocess_to_parse_ceiling",
        // make test installs Chromium, so the rendering step runs.
        "render_pages_per_s",
        "render_cpu_ms_per_page",
        "render_plain_pages_per_s",
    ] {
        assert!(
            report[key].as_f64().is_some_and(|v| v > 0.0),
            "{key} is a positive number: {}",
            report[key]
        );
    }
    let c = &report["correctness"];
    assert_eq!(c["pages_fetched"], 300, "{c}");
    assert_eq!(c["unique"], 300);
    assert_eq!(c["duplicates"], 0);
    assert_eq!(c["missing"], 0);
    assert_eq!(c["items_stored"], 300);
    assert_eq!(c["inprocess_exact"], true);
}
