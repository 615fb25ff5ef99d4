//! ansible-playbook with the `ferry` connection plugin: host `one` by
//! address through the plugin's path (`ansible_connection=ferry`), its pin
//! in ferry's known_hosts and its remote tmp inside the root (so module
//! files go through ferry put); host `two` through the collection
//! (`ferry.fleet.ferry`) by a name of ferry's client config, its remote tmp
//! in the server user's home (so they go through exec).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::{engine, mode, process_running, tree, EngineRun, Fleet, HOSTILE_NAME};
use crate::util::outside_tool;
use crate::util::{poll_until, DEADLINE};

const CONTENT: &str = "copied by ansible\n";

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet")
}

/// Writes the inventory, ferry's config and known_hosts, and `vars` as
/// extra variables, and runs `ansible-playbook PLAYBOOK`.
fn play(fleet: &Fleet, ansible: &Path, playbook: &str, vars: serde_json::Value) -> EngineRun {
    let (host, port) = fleet.address(0);
    let config_dir = fleet.path().join("home/.config/ferry");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("known_hosts"),
        format!("{host}:{port} {}\n", fleet.servers[0].fingerprint()),
    )
    .unwrap();
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
    let (root_one, root_two) = (fleet.servers[0].root(), fleet.servers[1].root());
    let inventory = format!(
        "[fleet]\n\
         one ansible_connection=ferry ansible_host={host} ansible_port={port} \
         ansible_ferry_token_file={token} root={root_one} \
         ansible_remote_tmp={root_one}/.ansible-tmp\n\
         two ansible_connection=ferry.fleet.ferry root={root_two}\n\
         [fleet:vars]\n\
         ansible_python_interpreter={python}\n",
        token = fleet.token_file(0).display(),
        root_one = root_one.display(),
        root_two = root_two.display(),
        python = fleet.python.display(),
    );
    let inventory_path = fleet.path().join("inventory.ini");
    std::fs::write(&inventory_path, inventory).unwrap();
    let vars_path = fleet.path().join("vars.json");
    std::fs::write(&vars_path, vars.to_string()).unwrap();
    let plugin_dir = fleet
        .package
        .join("ansible_collections/ferry/fleet/plugins/connection");
    let local_tmp = fleet.path().join("ansible-local");
    fleet.run(
        ansible,
        &[
            "-i",
            inventory_path.to_str().unwrap(),
            "-e",
            &format!("@{}", vars_path.display()),
            scripts().join(playbook).to_str().unwrap(),
        ],
        &[
            ("ANSIBLE_CONNECTION_PLUGINS", plugin_dir.to_str().unwrap()),
            ("ANSIBLE_LOCAL_TEMP", local_tmp.to_str().unwrap()),
            ("ANSIBLE_NOCOLOR", "1"),
            ("ANSIBLE_RETRY_FILES_ENABLED", "0"),
        ],
    )
}

#[test]
fn ansible_runs_copy_fetch_command_shell_file_raw_script_and_a_python_module_on_two_servers() {
    let Some(ansible) = engine("ansible-playbook") else {
        return;
    };
    let fleet = Fleet::start(&ansible);
    let src = fleet.path().join("src.txt");
    std::fs::write(&src, CONTENT).unwrap();
    let fetch_dir = fleet.path().join("fetched");
    let run = play(
        &fleet,
        &ansible,
        "playbook.yml",
        json!({
            "src_file": src,
            "fetch_dir": fetch_dir,
            "script_file": scripts().join("script.sh"),
        }),
    );
    assert_eq!(run.code, 0, "the playbook failed:\n{}", run.output());
    assert!(
        run.stdout.contains("ok=9") && !run.stdout.contains("failed=1"),
        "{}",
        run.stdout
    );
    for (i, name) in ["one", "two"].iter().enumerate() {
        let root = fleet.servers[i].root();
        let copied = root.join("copied.txt");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), CONTENT);
        assert_eq!(mode(&copied), 0o640);
        assert_eq!(
            std::fs::read_to_string(root.join("answer.txt")).unwrap(),
            "42\n"
        );
        assert_eq!(mode(&root.join("made")), 0o700);
        assert_eq!(
            std::fs::read_to_string(root.join("raw.txt")).unwrap(),
            "raw"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("script.txt")).unwrap(),
            "script ran\n"
        );
        let fetched = fetch_dir.join(format!("{name}.txt"));
        assert_eq!(std::fs::read_to_string(&fetched).unwrap(), CONTENT);
    }
}

#[test]
fn ansible_becomes_root_through_sudo_inside_the_command() {
    let Some(ansible) = engine("ansible-playbook") else {
        return;
    };
    let Some(sudo) = outside_tool::program("sudo", "apt install sudo") else {
        return;
    };
    let works = Command::new(&sudo)
        .args(["-n", "true"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !works {
        outside_tool::skip(
            "sudo -n true fails for this user (a password or no sudoers entry)",
            "run the tests as root or with NOPASSWD sudo",
        );
        return;
    }
    let fleet = Fleet::start(&ansible);
    let run = play(&fleet, &ansible, "become.yml", json!({}));
    assert_eq!(run.code, 0, "the playbook failed:\n{}", run.output());
    for server in &fleet.servers {
        let who = std::fs::read_to_string(server.root().join("become.txt")).unwrap();
        assert_eq!(who, "0");
    }
}

#[test]
fn ansible_fails_endless_output_and_endless_commands_and_fetches_a_hostile_name_safely() {
    let Some(ansible) = engine("ansible-playbook") else {
        return;
    };
    let fleet = Fleet::start(&ansible);
    let fetch_dir = fleet.path().join("fetched");
    std::fs::create_dir(&fetch_dir).unwrap();
    for server in &fleet.servers {
        std::fs::write(server.root().join(HOSTILE_NAME), "hostile\n").unwrap();
    }
    let run = play(
        &fleet,
        &ansible,
        "bad_input.yml",
        json!({"hostile": HOSTILE_NAME, "fetch_dir": fetch_dir}),
    );
    let output = run.output();
    assert_eq!(run.code, 0, "{output}");
    assert!(
        output.contains("too_large") && output.contains("67108864 bytes"),
        "no clear failure for the endless output:\n{output}"
    );
    assert!(
        output.contains("Timed out after 3 second"),
        "no clear failure for the command that never ends:\n{output}"
    );
    // Two failures ignored on each host, and the last task ran.
    assert_eq!(output.matches("ignored=2").count(), 2, "{output}");
    assert_eq!(output.matches("failed=0").count(), 2, "{output}");
    let fetched = tree(&fetch_dir);
    assert_eq!(
        fetched,
        vec![fetch_dir.join("one.fetched"), fetch_dir.join("two.fetched")],
        "{output}"
    );
    for path in &fetched {
        assert_eq!(std::fs::read_to_string(path).unwrap(), "hostile\n");
    }
    fleet.assert_no_hostile_name_ran();
    poll_until("the endless command to be killed", DEADLINE, || {
        (!process_running("sleep 86400.5")).then_some(())
    });
}
