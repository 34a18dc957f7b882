//! `kill -9` the relay binary under load, restart it, and check that every acknowledged webhook
//! reached GitHub. (`scripts/bench-relay` runs the same with 50,000 requests.)

use crate::support;

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_webhook_survives_a_kill_9() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_hookflow"));
    let report = support::load::crash_run(bin, 3000, 32, 1200).await;
    println!("{report:?}");
    assert_eq!(
        report.acknowledged, 3000,
        "senders retry until acknowledged"
    );
    assert_eq!(
        report.missing, 0,
        "an acknowledged event was lost: {report:?}"
    );
    // Only events in flight at the kill may arrive twice (delivered, not yet recorded).
    assert!(report.duplicates <= 64, "{report:?}");
}
