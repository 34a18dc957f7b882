//! The action's installer (`scripts/install-hookflow.sh`) against a release server on 127.0.0.1:
//! it installs an archive whose checksum matches, refuses one that does not, and says what to do
//! when there is neither a release nor cargo.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::routing::get;
use axum::Router;

fn root() -> PathBuf {
    // The workspace root: crates/cli/../..
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `hookflow-action-x86_64-unknown-linux-musl.tar.gz` holding this build's binary, and its
/// `.sha256`.
fn release(dir: &Path, corrupt_checksum: bool) -> (Vec<u8>, String) {
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).expect("mkdir");
    std::fs::copy(env!("CARGO_BIN_EXE_hookflow"), stage.join("hookflow")).expect("copy binary");
    let archive = dir.join("hookflow.tar.gz");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&stage)
        .arg("hookflow")
        .status()
        .expect("tar");
    assert!(ok.success());
    let bytes = std::fs::read(&archive).expect("read");
    let digest = if corrupt_checksum {
        "0".repeat(64)
    } else {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    };
    (
        bytes,
        format!("{digest}  hookflow-action-x86_64-unknown-linux-musl.tar.gz\n"),
    )
}

/// A release server on 127.0.0.1 shaped like GitHub's: `download/<tag>/<asset>` for each of
/// `tags`, and `latest/download/<asset>` when `latest`.
async fn serve_releases(archive: Vec<u8>, checksum: String, tags: &[&str], latest: bool) -> String {
    let asset = "hookflow-action-x86_64-unknown-linux-musl.tar.gz";
    let mut folders: Vec<String> = tags.iter().map(|t| format!("/download/{t}")).collect();
    if latest {
        folders.push("/latest/download".to_string());
    }
    let mut app = Router::new();
    for folder in folders {
        let (a, c) = (archive.clone(), checksum.clone());
        app = app
            .route(
                &format!("{folder}/{asset}"),
                get(move || async move { a.clone() }),
            )
            .route(
                &format!("{folder}/{asset}.sha256"),
                get(move || async move { c.clone() }),
            );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn serve(archive: Vec<u8>, checksum: String) -> String {
    serve_releases(archive, checksum, &["v9.9.9"], false).await
}

fn install(dir: &Path, releases: &str, version: &str, path: &str) -> std::process::Output {
    Command::new("bash")
        .arg(root().join("scripts/install-hookflow.sh"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("HOOKFLOW_VERSION", version)
        .env("HOOKFLOW_ACTION_PATH", root())
        .env("HOOKFLOW_ACTION_REPOSITORY", "octo/hookflow")
        .env("HOOKFLOW_ACTION_REF", "main")
        .env("HOOKFLOW_RELEASES_URL", releases)
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env("RUNNER_TEMP", dir.join("runner-temp"))
        .env("GITHUB_PATH", dir.join("github-path"))
        .output()
        .expect("bash runs")
}

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_a_release_whose_checksum_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, checksum) = release(dir.path(), false);
    let url = serve(archive, checksum).await;
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || install(&d, &url, "v9.9.9", SYSTEM_PATH))
        .await
        .expect("join");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("installed release v9.9.9 (x86_64-unknown-linux-musl)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(concat!("hookflow ", env!("CARGO_PKG_VERSION"))),
        "the installed binary runs: {stdout}"
    );
    let path_file =
        std::fs::read_to_string(dir.path().join("github-path")).expect("GITHUB_PATH written");
    assert_eq!(
        path_file.trim(),
        dir.path()
            .join("runner-temp/hookflow/bin")
            .display()
            .to_string()
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_archive_whose_checksum_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, checksum) = release(dir.path(), true);
    let url = serve(archive, checksum).await;
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || install(&d, &url, "v9.9.9", SYSTEM_PATH))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("checksum mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !dir.path()
            .join("runner-temp/hookflow/bin/hookflow")
            .exists(),
        "nothing installed"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_release_or_cargo_it_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = serve(Vec::new(), String::new()).await;
    let d = dir.path().to_path_buf();
    // v0.0.1 is not served: 404, then no cargo on this PATH.
    let out = tokio::task::spawn_blocking(move || install(&d, &url, "v0.0.1", SYSTEM_PATH))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("has no release archive"), "{stdout}");
    assert!(stdout.contains("no cargo to build one"), "{stdout}");
}

/// The version of the action's own source, as its Cargo.toml says.
fn own_version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_installs_the_release_of_the_actions_own_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, checksum) = release(dir.path(), false);
    let own = own_version();
    let url = serve_releases(archive, checksum, &[own.as_str()], false).await;
    let d = dir.path().to_path_buf();
    // `uses: …@v0` (a moving tag) or `@vX.Y.Z`: the version comes from the source at that ref.
    let out = tokio::task::spawn_blocking(move || install(&d, &url, "auto", SYSTEM_PATH))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "installed release {} (x86_64-unknown-linux-musl)",
            own_version()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("::notice::"), "{stdout}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreleased_ref_gets_the_latest_release_with_a_notice_not_a_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (archive, checksum) = release(dir.path(), false);
    // Only a latest release: the action's own version is not released yet (a branch).
    let url = serve_releases(archive, checksum, &[], true).await;
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || install(&d, &url, "auto", SYSTEM_PATH))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("::notice::hookflow: the action's ref main"),
        "{stdout}"
    );
    assert!(stdout.contains("installed release latest"), "{stdout}");
    assert!(!stdout.contains("building from"), "no compile: {stdout}");
}
