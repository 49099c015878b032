//! The benchmark harness in smoke mode, as CI runs it: every scenario end to end in seconds,
//! with sane numbers (answers counted, no errors, CPU and memory read, charts drawn). Timings
//! are never asserted: this proves the harness works, not how fast anything is.

use serde_json::Value;
use std::process::Command;

#[test]
fn smoke_run_measures_every_scenario_on_every_target() {
    let dir = std::env::temp_dir().join(format!("codex-gate-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate-bench"))
        .args(["--smoke", "--mock-addr", "127.0.0.1:0", "--out"])
        .arg(&dir)
        .output()
        .expect("run codex-gate-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");

    let run: Value = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(run["mode"], "smoke");
    assert!(run["machine"]["cpus"].as_u64().unwrap() >= 1);
    let scenarios = run["scenarios"].as_array().unwrap();
    let ids: Vec<&str> = scenarios.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "h", "b", "c", "d", "e", "f", "g", "j", "k"]);

    for sc in scenarios {
        let id = sc["id"].as_str().unwrap();
        let targets = sc["targets"].as_array().unwrap();
        let names: Vec<&str> = targets.iter().map(|t| t["name"].as_str().unwrap()).collect();
        if id == "b" {
            // Scenario b is measured through codex-gate's pool too (the mock's open accounts).
            assert_eq!(names, ["direct", "bare-relay", "codex-gate", "codex-gate-pool"], "{id}");
        } else {
            assert_eq!(names, ["direct", "bare-relay", "codex-gate"], "{id}");
        }
        for t in targets {
            let name = t["name"].as_str().unwrap();
            assert!(t["requests"].as_u64().unwrap() > 0, "{id}/{name}: no answers");
            assert_eq!(t["errors"], 0, "{id}/{name}: {}", t["first_error"]);
            assert!(t["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{id}/{name}");
            // Every request's first byte comes no later than its end, so each TTFB percentile is
            // at most the same latency percentile (fails if the two were mixed up).
            for p in ["p50", "p99"] {
                assert!(t["ttfb_ms"][p].as_f64().unwrap() <= t["latency_ms"][p].as_f64().unwrap(), "{id}/{name} {p}");
            }
            if name != "direct" {
                assert!(t["rss_peak_mb"].as_f64().unwrap() > 1.0, "{id}/{name}: RSS not read");
                assert!(t["rss_idle_mb"].as_f64().unwrap() > 1.0, "{id}/{name}: idle RSS not read");
            }
        }
        let gate = &targets[2];
        match id {
            "f" => {
                for t in &targets[1..] {
                    assert_eq!(t["open_streams"], 20, "{id}: all streams were open together");
                    assert!(t["rss_per_stream_kb"].as_f64().is_some());
                    assert!(t["cpu_percent"].as_f64().is_some());
                }
            }
            "g" | "j" => {
                // The mock waits 50 ms before its first byte: nothing can beat that.
                for t in targets {
                    assert!(t["ttfb_ms"]["p50"].as_f64().unwrap() >= 50.0, "{id}: {t}");
                }
            }
            _ => {
                assert!(gate["rps"].as_f64().unwrap() > 0.0);
                for t in &targets[1..] {
                    assert!(t["cpu_s_per_1k"].as_f64().unwrap() > 0.0, "{id}: CPU time not read for {}", t["name"]);
                }
                // codex-gate's own overhead figures are collected next to the harness's.
                assert!(gate["header_overhead_ms"]["mean"].as_f64().is_some(), "{id}");
                assert!(gate["metrics_overhead_us"].as_f64().unwrap() > 0.0, "{id}");
                assert!(sc["agreement"].is_object(), "{id}");
            }
        }
        if ["j", "k"].contains(&id) {
            // Over TLS the mock counts its handshakes: the direct client opens one per
            // connection per round; the relays keep theirs open across rounds.
            let hs = |i: usize| targets[i]["upstream_handshakes_per_100"].as_f64().unwrap();
            assert!(hs(0) > 0.0, "{id}: the direct client's handshakes were counted");
            assert!(hs(2) < hs(0), "{id}: codex-gate reuses its upstream connections: {} vs {}", hs(2), hs(0));
            assert_eq!(sc["params"]["tls"], true);
        } else {
            assert!(targets[0].get("upstream_handshakes_per_100").is_none(), "{id}: plain HTTP");
        }
        let checks = sc["checks"].as_array().unwrap();
        assert!(checks.iter().any(|c| c["what"].as_str().unwrap().starts_with("errors")), "{id}");
        let svg = std::fs::read_to_string(dir.join(format!("{id}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{id}.svg");
        assert!(svg.contains("codex-gate"), "{id}.svg names the targets");
    }
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    for h in ["## a.", "## b.", "## g.", "## k.", "| codex-gate |", "| codex-gate-pool |", "TLS handshakes at the mock"]
    {
        assert!(md.contains(h), "results.md lacks {h}");
    }

    // The charts can be redrawn from the JSON alone.
    std::fs::remove_file(dir.join("a.svg")).unwrap();
    let redraw = Command::new(env!("CARGO_BIN_EXE_codex-gate-bench"))
        .arg("chart")
        .arg(dir.join("results.json"))
        .output()
        .unwrap();
    assert!(redraw.status.success());
    assert!(dir.join("a.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_codex-gate-bench")).args(args).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (ok, err) = run(&["--scenario", "z", "--out", "/nonexistent-dir-is-not-created/x"]);
    assert!(!ok);
    assert!(err.contains("--scenario z") || err.contains("cannot create"), "{err}");
    let (ok, err) = run(&["--target", "codex-gate=http://127.0.0.1:1/v1"]);
    assert!(!ok && err.contains("taken"), "{err}");
    let (ok, err) = run(&["--target", "x=ftp://host"]);
    assert!(!ok && err.contains("not an http:// URL"), "{err}");
    let (ok, err) = run(&["chart", "/nonexistent/results.json"]);
    assert!(!ok && err.contains("cannot read"), "{err}");
}

#[test]
fn soak_smoke_serves_mixed_faulty_traffic_without_losing_a_row() {
    let dir = std::env::temp_dir().join(format!("codex-gate-soak-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate-bench"))
        .args(["soak", "--minutes", "0.1", "--connections", "8", "--out"])
        .arg(&dir)
        .output()
        .expect("run codex-gate-bench soak");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak failed: {stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    let r: Value = serde_json::from_slice(&std::fs::read(dir.join("soak.json")).unwrap()).unwrap();
    assert!(r["requests"].as_u64().unwrap() > 50, "{r}");
    assert!(r["answered_error"].as_u64().unwrap() > 0, "the injected faults showed: {r}");
    assert_eq!(r["rows_lost"], 0, "{r}");
    assert_eq!(r["panics"], 0);
    assert_eq!(r["no_answer"], 0, "every request got an HTTP answer: {r}");
    assert!(r["rss_mb"]["end"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_client_comparison_measures_all_three_clients() {
    let dir = std::env::temp_dir().join(format!("codex-gate-bench-clients-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate-bench"))
        .args(["clients", "--streams", "20", "--requests", "200", "--out"])
        .arg(&dir)
        .output()
        .expect("run codex-gate-bench clients");
    assert!(out.status.success(), "clients failed: {}", String::from_utf8_lossy(&out.stderr));
    let probes: Value = serde_json::from_slice(&std::fs::read(dir.join("clients.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = probes.as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["gate", "hyper-conn", "hyper-pooled"]);
    for p in probes.as_array().unwrap() {
        assert_eq!(p["streams"], 20);
        assert_eq!(p["requests"], 200, "{p}");
        // 200 requests take a few ms, under /proc's 10 ms tick: only that it was read is checked.
        assert!(p["cpu_us_per_request"].as_f64().unwrap() >= 0.0, "{p}");
        assert!(p["rss_per_stream_kb"].as_f64().is_some(), "{p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_websocket_sessions_send_less_and_the_pools_backend_socket_carries_only_new_items() {
    let dir = std::env::temp_dir().join(format!("codex-gate-bench-ws-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate-bench"))
        .args(["ws", "--sessions", "2", "--turns", "3", "--out"])
        .arg(&dir)
        .output()
        .expect("run codex-gate-bench ws");
    assert!(out.status.success(), "ws failed: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("ws.json")).unwrap()).unwrap();
    let r = doc["results"].as_array().unwrap();
    let modes: Vec<&str> = r.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(
        modes,
        ["direct HTTP", "codex-gate HTTP", "provider WebSocket", "codex-gate WebSocket", "pool HTTP", "pool WebSocket"]
    );
    let f = |i: usize, k: &str| r[i][k].as_f64().unwrap();
    assert!(f(3, "sent_kb_per_turn") < f(1, "sent_kb_per_turn") / 2.0, "only new items go over the WebSocket");
    // ... yet the provider (HTTP-only here) gets the same history either way,
    assert!((f(3, "upstream_kb_per_turn") - f(1, "upstream_kb_per_turn")).abs() < 0.5, "{r:?}");
    // while a provider's own WebSocket and the pool's backend one carry only the new items.
    assert!(f(2, "upstream_kb_per_turn") > 0.0, "every turn reached the provider: {r:?}");
    assert!(f(2, "upstream_kb_per_turn") < f(1, "upstream_kb_per_turn") / 2.0, "{r:?}");
    assert!(f(5, "sent_kb_per_turn") < f(4, "sent_kb_per_turn") / 2.0, "{r:?}");
    assert!(f(5, "upstream_kb_per_turn") > 0.0, "every pool turn reached the backend: {r:?}");
    assert!(f(5, "upstream_kb_per_turn") < f(4, "upstream_kb_per_turn") / 2.0, "{r:?}");
    assert!(r.iter().all(|m| m["turns"] == 6 && m["ttft_ms_mean"].as_f64().unwrap() > 0.0), "{r:?}");
    // The WebSocket client offers permessage-deflate: its ~40 KB first frame goes compressed.
    assert!(f(2, "wire_up_kb_per_turn") < f(2, "sent_kb_per_turn") / 2.0, "{r:?}");
    assert!(f(1, "wire_up_kb_per_turn") >= f(1, "sent_kb_per_turn"), "HTTP bodies are not compressed: {r:?}");
    let idle = &doc["idle"];
    assert!(idle["plain_kb_per_connection"].as_f64().is_some() && idle["deflate_kb_per_connection"].as_f64().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cost_curves_measure_every_size_they_name() {
    let dir = std::env::temp_dir().join(format!("codex-gate-bench-curves-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_codex-gate-bench"))
        .args(["curves", "--smoke", "--out"])
        .arg(&dir)
        .output()
        .expect("run codex-gate-bench curves");
    assert!(out.status.success(), "curves failed: {}", String::from_utf8_lossy(&out.stderr));
    let curves: Value = serde_json::from_slice(&std::fs::read(dir.join("curves.json")).unwrap()).unwrap();
    let names: Vec<&str> = curves.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["body", "streams", "pool", "log-sqlite"]);
    for c in curves.as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let points = c["points"].as_array().unwrap();
        assert_eq!(points.len(), 2, "{name}: both smoke sizes measured");
        for p in points {
            let values = p[1].as_array().unwrap();
            assert_eq!(values.len(), c["columns"].as_array().unwrap().len(), "{name}");
            assert!(values.iter().all(|v| v.as_f64().unwrap() >= 0.0), "{name}: {p}");
        }
        let x = |i: usize| points[i][0].as_f64().unwrap();
        assert!(x(1) > x(0), "{name}: sizes grow");
        let svg = std::fs::read_to_string(dir.join(format!("curve-{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{name}");
    }
    let get = |name: &str, i: usize, col: usize| {
        let c = curves.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
        c["points"][i][1][col].as_f64().unwrap()
    };
    // Every stream asked for was open at once, and CPU was read.
    assert_eq!((get("streams", 0, 0), get("streams", 1, 0)), (10.0, 40.0));
    assert!(get("body", 1, 0) > 0.0 && get("pool", 1, 0) > 0.0, "CPU per request read");
    // The bigger log's retention pass deleted its oldest 1 % (more rows than the smaller's).
    assert!(get("log-sqlite", 1, 5) > get("log-sqlite", 0, 5), "{curves}");
    // The pass is its cut-off plus its steps: no part is longer than the whole.
    assert!(get("log-sqlite", 1, 4) <= get("log-sqlite", 1, 2) && get("log-sqlite", 1, 3) <= get("log-sqlite", 1, 2));
    assert!(std::fs::read_to_string(dir.join("curves.md")).unwrap().contains("## Pool size"));
}
