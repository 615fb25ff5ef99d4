//! pyinfra with the `@ferry` connector: one host by address with its
//! fingerprint given, the other by a name of ferry's client config.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{engine, mode, process_running, tree, Fleet, HOSTILE_NAME};
use crate::util::{poll_until, DEADLINE};

const CONTENT: &str = "listen = 127.0.0.1\n";

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet")
}

/// Writes the inventory (host one by address, host two by the config name
/// `two`, with `data` added to each) and runs `pyinfra -y INVENTORY DEPLOY`.
fn deploy(
    fleet: &Fleet,
    pyinfra: &Path,
    deploy: &str,
    data: impl Fn(usize) -> serde_json::Value,
) -> super::EngineRun {
    let (host, port) = fleet.address(0);
    let config_dir = fleet.path().join("home/.config/ferry");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.toml"),
        format!(
            "[hosts.two]\nserver = \"{}\"\ntoken-file = \"{}\"\nfingerprint = \"{}\"\n",
            fleet.servers[1].addr(),
            fleet.token_file(1).display(),
            fleet.servers[1].fingerprint()
        ),
    )
    .unwrap();
    let mut one = data(0);
    one["ferry_token_file"] = json!(fleet.token_file(0));
    one["ferry_fingerprint"] = json!(fleet.servers[0].fingerprint());
    let hosts = json!([
        [format!("@ferry/{host}:{port}"), one],
        ["@ferry/two", data(1)]
    ]);
    let inventory = fleet.path().join("inventory.json");
    std::fs::write(&inventory, hosts.to_string()).unwrap();
    let inventory_py = scripts().join("inventory.py");
    let deploy_py = scripts().join(deploy);
    fleet.run(
        pyinfra,
        &[
            "-y",
            inventory_py.to_str().unwrap(),
            deploy_py.to_str().unwrap(),
        ],
        &[("FLEET_INVENTORY_JSON", inventory.to_str().unwrap())],
    )
}

#[test]
fn pyinfra_deploys_a_directory_a_file_a_template_and_a_command_to_two_servers() {
    let Some(pyinfra) = engine("pyinfra") else {
        return;
    };
    let fleet = Fleet::start(&pyinfra);
    let src = fleet.path().join("app.conf");
    std::fs::write(&src, CONTENT).unwrap();
    let template = scripts().join("motd.j2");
    let run = deploy(&fleet, &pyinfra, "deploy.py", |i| {
        let server = &fleet.servers[i];
        json!({
            "root": server.root(),
            "src_file": src,
            "template": template,
            "outside": server.sandbox.path(),
        })
    });
    assert_eq!(run.code, 0, "the deploy failed:\n{}", run.output());
    for (i, name) in ["127.0.0.1", "two"].iter().enumerate() {
        let root = fleet.servers[i].root();
        assert_eq!(mode(&root.join("etc/app")), 0o750);
        let conf = root.join("etc/app/app.conf");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), CONTENT);
        assert_eq!(mode(&conf), 0o640);
        let motd = std::fs::read_to_string(root.join("etc/motd")).unwrap();
        assert!(
            motd.starts_with("hello fleet from @ferry/") && motd.contains(name),
            "{motd:?}"
        );
        // Commands run in the served root, as relative paths start there.
        let where_ = std::fs::read_to_string(root.join("where.txt")).unwrap();
        assert_eq!(Path::new(where_.trim()), root.canonicalize().unwrap());
        let outside = fleet.servers[i].sandbox.path().join("outside.conf");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), CONTENT);
        // No partial file was left behind, by ferry or the exec path.
        let leftovers: Vec<_> = tree(root)
            .into_iter()
            .chain(tree(fleet.servers[i].sandbox.path()))
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(".ferry-partial-") || name.starts_with(".ferry-fleet-")
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn pyinfra_fails_endless_output_and_endless_commands_and_fetches_a_hostile_name_safely() {
    let Some(pyinfra) = engine("pyinfra") else {
        return;
    };
    let fleet = Fleet::start(&pyinfra);
    let fetch_dir = fleet.path().join("fetched");
    std::fs::create_dir(&fetch_dir).unwrap();
    for server in &fleet.servers {
        std::fs::write(server.root().join(HOSTILE_NAME), "hostile\n").unwrap();
    }
    let run = deploy(&fleet, &pyinfra, "bad_deploy.py", |i| {
        json!({
            "root": fleet.servers[i].root(),
            "hostile": HOSTILE_NAME,
            "fetch_to": fetch_dir.join(format!("host{i}")),
        })
    });
    let output = run.output();
    // Both failed operations were allowed to fail; the rest succeeded.
    assert_eq!(run.code, 0, "{output}");
    assert!(
        output.contains("too_large") && output.contains("67108864 bytes"),
        "no clear failure for the endless output:\n{output}"
    );
    assert!(
        output.to_lowercase().contains("timeout") || output.contains("timed out"),
        "no clear failure for the command that never ends:\n{output}"
    );
    // The connection was dropped after each failure, and made again.
    for server in &fleet.servers {
        let still = std::fs::read_to_string(server.root().join("still.txt"));
        assert_eq!(still.ok().as_deref(), Some("still-here\n"), "{output}");
    }
    // The fetched files landed where pyinfra was told, and only there.
    let fetched = tree(&fetch_dir);
    assert_eq!(
        fetched,
        vec![fetch_dir.join("host0"), fetch_dir.join("host1")],
        "{output}"
    );
    for path in &fetched {
        assert_eq!(std::fs::read_to_string(path).unwrap(), "hostile\n");
    }
    fleet.assert_no_hostile_name_ran();
    // The endless command died with its connection or its timeout.
    poll_until("the endless command to be killed", DEADLINE, || {
        (!process_running("sleep 86400.25")).then_some(())
    });
}
