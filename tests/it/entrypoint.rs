//! `entrypoint.sh`: POSIX sh, passes arguments through (default `run`), and `exec`s the binary
//! so that `docker stop`'s SIGTERM reaches it rather than a shell.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn fake_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("fake-connector");
    std::fs::write(&path, "#!/bin/sh\necho \"$$ $*\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn run_entrypoint(args: &[&str]) -> (u32, String) {
    let dir = std::env::temp_dir().join(format!(
        "entrypoint-test-{}-{}",
        std::process::id(),
        args.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = fake_binary(&dir);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/entrypoint.sh");
    // `dash` when present: the strictest common POSIX sh.
    let shell = if std::path::Path::new("/bin/dash").exists() {
        "/bin/dash"
    } else {
        "/bin/sh"
    };
    let mut child = Command::new(shell)
        .arg(script)
        .args(args)
        .env("CONNECTOR_BIN", &bin)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
    (pid, out)
}

#[test]
fn execs_the_binary_with_run_by_default() {
    let (pid, out) = run_entrypoint(&[]);
    // Same PID: the shell was replaced by the binary, so signals go straight to it.
    assert_eq!(out.trim(), format!("{pid} run"));
}

#[test]
fn passes_arguments_through() {
    let (pid, out) = run_entrypoint(&["convert", "--tlp", "red"]);
    assert_eq!(out.trim(), format!("{pid} convert --tlp red"));
}
