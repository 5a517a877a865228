//! What a platform team deploys (`deploy/Dockerfile`, `deploy/compose.yaml`, `deploy/k8s/`),
//! validated without a container engine or a cluster: `tests/deploy/check.sh` makes its locked
//! virtualenv on first use and runs `tests/deploy/check.py`, which checks every built-in kind
//! strictly with kubernetes-validate, KEDA's kinds structurally, the Dockerfile's stages, and all
//! of it against these binaries' own `--help` (the `LRO_*` variables they accept, their ports).

#[tokio::test]
async fn deploy_files_are_valid_and_match_the_binaries() {
    let stdout = crate::harness::run_script(
        "deploy/check.sh",
        [
            "--api-bin",
            env!("CARGO_BIN_EXE_lro-test-api"),
            "--worker-bin",
            env!("CARGO_BIN_EXE_lro-test-worker"),
        ],
    )
    .await;
    assert_eq!(
        stdout.lines().last(),
        Some("deploy: all passed"),
        "{stdout}"
    );
    // The built-in kinds were validated against a schema, KEDA's structurally.
    for kind in [
        "Deployment/lro-api",
        "Deployment/lro-worker",
        "ScaledObject/lro-worker",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok ") && l.contains(kind)),
            "{kind} not checked:\n{stdout}"
        );
    }
}
