//! One function per command: load what it needs, call the library, print.

use anyhow::{Context, Result};
use serde_json::json;

use super::client::Client;
use super::{Cli, Command, ConfigAction, DeviceAction, FolderAction, GuiAction};
use crate::api::dto::{
    Changed, Diagnosis, Pending, Reloaded, RescanTicket, Restored, Status, Version,
};
use crate::config::Config;
use crate::home::Home;
use crate::identity;

pub(super) fn run(cli: Cli) -> Result<()> {
    let home = Home::resolve(cli.home)?;
    match cli.command {
        Command::Init { name } => init(&home, name),
        Command::Id => {
            println!("{}", identity::load(&home)?.device_id);
            Ok(())
        }
        Command::Run => crate::daemon::run(&home),
        Command::Config { action } => config(&home, action),
        Command::Device { action } => device(&home, action),
        Command::Folder { action } => folder(&home, action),
        Command::Status { json, watch } => status(&home, json, watch),
        Command::Doctor {
            folder_id,
            path,
            json,
        } => doctor(&home, folder_id.as_deref(), path.as_deref(), json),
        Command::Versions {
            folder_id,
            path,
            json,
        } => versions(&home, &folder_id, path.as_deref(), json),
        Command::Restore {
            folder_id,
            path,
            at,
        } => restore(&home, &folder_id, &path, at.as_deref()),
        Command::Pending { json } => pending(&home, json),
        Command::Gui {
            action: GuiAction::Password,
        } => gui_password(&home),
    }
}

/// Reads the new GUI password (twice on a terminal) and saves its hash.
fn gui_password(home: &Home) -> Result<()> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("new GUI password: ")?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            anyhow::bail!("the two passwords differ; nothing changed");
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    let hash = crate::api::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
    edit(home, |c| {
        c.api.password_hash = hash;
        Ok(())
    })?;
    println!("GUI password set");
    Ok(())
}

fn init(home: &Home, name: Option<String>) -> Result<()> {
    let (id, created) = identity::load_or_create(home)?;
    let path = home.config_path();
    if path.exists() {
        let mut c = Config::load(&path)?;
        if let Some(name) = name {
            c.set("name", &name)?;
            c.save(&path)?;
        }
    } else {
        let mut c = Config::new_for("");
        c.set("name", &name.unwrap_or_else(crate::config::host_name))?;
        c.save(&path)?;
    }
    if !created {
        eprintln!(
            "{} already has an identity; keeping it",
            home.dir().display()
        );
    }
    println!("{}", id.device_id);
    Ok(())
}

/// Loads the config, applies `change`, and saves it only if that succeeded;
/// then a running daemon applies it at once.
fn edit<T>(home: &Home, change: impl FnOnce(&mut Config) -> Result<T>) -> Result<T> {
    let path = home.config_path();
    let mut c = Config::load(&path)?;
    let out = change(&mut c)?;
    c.save(&path)?;
    apply_live(home)?;
    Ok(out)
}

/// Tells a running daemon to apply the saved config. No daemon: nothing to
/// do, it reads the file when it starts.
fn apply_live(home: &Home) -> Result<()> {
    if !home.api_address_path().exists() {
        return Ok(());
    }
    let Ok(client) = Client::connect(home) else {
        return Ok(());
    };
    match client.post::<Reloaded>("/rest/config/reload") {
        Ok(r) => {
            for n in r.notes {
                eprintln!("note: {n}");
            }
            Ok(())
        }
        Err(e) if e.to_string().contains("not answering") => Ok(()),
        Err(e) => Err(e.context("saved, but the running daemon did not apply it")),
    }
}

fn config(home: &Home, action: ConfigAction) -> Result<()> {
    match action {
        ConfigAction::Get { key } => {
            println!("{}", Config::load(&home.config_path())?.get(&key)?);
        }
        ConfigAction::Set { key, value } => {
            edit(home, |c| Ok(c.set(&key, &value)?))?;
        }
    }
    Ok(())
}

fn device(home: &Home, action: DeviceAction) -> Result<()> {
    match action {
        DeviceAction::Add {
            id,
            name,
            addresses,
        } => {
            let own = identity::load(home)?.device_id;
            edit(home, |c| {
                Ok(c.add_device(&own, id, name.as_deref(), &addresses)?)
            })?;
            println!("added device {id}");
            if addresses.is_empty() || addresses.iter().any(|a| a == proto::addr::DYNAMIC) {
                let c = Config::load(&home.config_path())?;
                let mut ways = Vec::new();
                if c.discovery.local {
                    ways.push("on the LAN".to_string());
                }
                if !c.discovery.global.is_empty() {
                    ways.push(format!(
                        "through {} global discovery server(s)",
                        c.discovery.global.len()
                    ));
                }
                if ways.is_empty() {
                    println!("it has no address and discovery is off: it can only connect to us (set discovery.local or discovery.global, or give --address)");
                } else {
                    println!("it will be found by discovery ({})", ways.join(" and "));
                }
            }
        }
        DeviceAction::Remove { id } => {
            let unshared = edit(home, |c| Ok(c.remove_device(&id)?))?;
            println!("removed device {id}");
            for f in unshared {
                println!("unshared folder {f:?} from it");
            }
        }
        DeviceAction::List { json } => {
            let c = Config::load(&home.config_path())?;
            if json {
                let list: Vec<_> = c
                    .devices
                    .iter()
                    .map(|d| json!({"id": d.id.to_string(), "name": d.name, "addresses": d.addresses}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if c.devices.is_empty() {
                println!("no devices configured");
            } else {
                for d in &c.devices {
                    println!("{}  {:<16}  {}", d.id, d.name, d.addresses.join(","));
                }
            }
        }
    }
    Ok(())
}

fn folder(home: &Home, action: FolderAction) -> Result<()> {
    match action {
        FolderAction::Add {
            folder_id,
            path,
            create,
            kind,
            share,
            versioning,
        } => {
            let created = create && !path.exists();
            if created {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
            }
            // Check first, so that bad input leaves no marker behind; the
            // marker must exist before a running daemon starts the folder.
            let checked = Config::load(&home.config_path())
                .map_err(anyhow::Error::from)
                .and_then(|mut c| Ok(c.add_folder(&folder_id, &path, kind, &share)?));
            if let Err(e) = checked {
                if created {
                    let _ = std::fs::remove_dir(&path);
                }
                return Err(e);
            }
            crate::fs::ensure_marker(&path)
                .with_context(|| format!("creating the folder marker in {}", path.display()))?;
            edit(home, |c| {
                c.add_folder(&folder_id, &path, kind, &share)?;
                Ok(c.set_versioning(&folder_id, versioning)?)
            })?;
            println!("added folder {folder_id:?}");
        }
        FolderAction::Rescan { folder_id } => rescan(home, &folder_id)?,
        FolderAction::Verify { folder_id, json } => verify(home, &folder_id, json)?,
        FolderAction::Remove { folder_id } => {
            edit(home, |c| Ok(c.remove_folder(&folder_id)?))?;
            println!("removed folder {folder_id:?} (its files are where they were)");
        }
        FolderAction::Set {
            folder_id,
            versioning,
            kind,
        } => {
            if versioning.is_none() && kind.is_none() {
                anyhow::bail!("nothing to set: give --versioning or --type");
            }
            edit(home, |c| {
                if let Some(v) = versioning {
                    c.set_versioning(&folder_id, v)?;
                }
                if let Some(k) = kind {
                    c.set_kind(&folder_id, k)?;
                }
                Ok(())
            })?;
            if let Some(v) = versioning {
                println!("folder {folder_id:?}: versioning {v}");
            }
            if let Some(k) = kind {
                println!("folder {folder_id:?}: {}", k.as_str());
            }
        }
        FolderAction::Override { folder_id } => {
            let c: Changed =
                Client::connect(home)?.post(&format!("/rest/folders/{folder_id}/override"))?;
            println!(
                "{folder_id:?}: our version of {} entries now wins",
                c.changed
            );
        }
        FolderAction::Revert { folder_id } => {
            let c: Changed =
                Client::connect(home)?.post(&format!("/rest/folders/{folder_id}/revert"))?;
            println!("{folder_id:?}: {} local changes reverted", c.changed);
        }
        FolderAction::Pause { folder_id } => {
            if edit(home, |c| Ok(c.pause_folder(&folder_id, true)?))? {
                println!("paused folder {folder_id:?}");
            } else {
                println!("folder {folder_id:?} was already paused");
            }
        }
        FolderAction::Resume {
            folder_id,
            accept_deletes,
        } => {
            if edit(home, |c| Ok(c.pause_folder(&folder_id, false)?))? {
                println!("resumed folder {folder_id:?}");
            } else if !accept_deletes {
                println!("folder {folder_id:?} was not paused");
            }
            if accept_deletes {
                resume_deletes(home, &folder_id)?;
            }
        }
        FolderAction::Share {
            folder_id,
            device_id,
        } => {
            if edit(home, |c| Ok(c.share_folder(&folder_id, &device_id)?))? {
                println!("shared folder {folder_id:?} with {device_id}");
            } else {
                println!("folder {folder_id:?} was already shared with {device_id}");
            }
        }
        FolderAction::List { json } => {
            let c = Config::load(&home.config_path())?;
            if json {
                let list: Vec<_> = c
                    .folders
                    .iter()
                    .map(|f| {
                        json!({
                            "id": f.id,
                            "path": f.path,
                            "type": f.kind.as_str(),
                            "versioning": f.versioning.to_string(),
                            "paused": f.paused,
                            "devices": f.devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if c.folders.is_empty() {
                println!("no folders configured");
            } else {
                for f in &c.folders {
                    println!(
                        "{:<16}  {:<12}  {}  (shared with {} devices)",
                        f.id,
                        f.kind.as_str(),
                        f.path.display(),
                        f.devices.len()
                    );
                }
            }
        }
    }
    Ok(())
}

fn status(home: &Home, json: bool, watch: bool) -> Result<()> {
    let client = Client::connect(home)?;
    if watch {
        return super::progress::watch(&client);
    }
    let st: Status = client.get("/rest/status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    println!("{} ({})", st.device_id, st.name);
    for f in &st.folders {
        let state = match &f.error {
            Some(e) => format!("error: {e}"),
            None => f.state.clone(),
        };
        println!(
            "folder {:?} [{}] {}: {} files, {} dirs, {} bytes; global {} files; need {} ({} bytes)",
            f.id,
            f.kind,
            state,
            f.local_files,
            f.local_directories,
            f.local_bytes,
            f.global_files,
            f.need_files,
            f.need_bytes
        );
        if let Some(w) = &f.watch_problem {
            println!("  ! {w}");
        }
        if let Some(h) = &f.hold {
            println!("  ! {h}");
        }
        for e in f.errors.iter().take(5) {
            println!("  ! {e}");
        }
    }
    for d in &st.devices {
        let conn = match (&d.address, &d.transport, &d.relay) {
            (Some(_), Some(t), Some(r)) => format!(
                "connected via {t} {r} ({})",
                d.source.as_deref().unwrap_or("?")
            ),
            (Some(a), Some(t), None) => format!(
                "connected via {t} at {a} ({})",
                d.source.as_deref().unwrap_or("?")
            ),
            _ => "not connected".to_string(),
        };
        println!("device {} {:?}: {conn}", d.id, d.name);
    }
    for s in &st.discovery {
        let state = match (&s.error, s.ok) {
            (Some(e), _) => format!("failing: {e}"),
            (None, true) => "ok".to_string(),
            (None, false) => "not tried yet".to_string(),
        };
        println!(
            "discovery {} {}: {state}",
            s.source,
            s.server.as_deref().unwrap_or("")
        );
    }
    for r in &st.relays {
        let state = match (r.joined, &r.relay, &r.error) {
            (true, Some(uri), _) if uri != &r.entry => format!("joined {uri}"),
            (true, _, _) => "joined".to_string(),
            (false, _, Some(e)) => format!("failing: {e}"),
            (false, _, None) => "joining".to_string(),
        };
        println!("relay {}: {state}", r.entry);
    }
    if st.nat.enabled {
        let state = match (&st.nat.external[..], &st.nat.error) {
            ([], Some(e)) => format!("failing: {e}"),
            ([], None) => "looking for the router".to_string(),
            (ext, _) => format!(
                "mapped at {} by {}",
                ext.join(", "),
                st.nat.gateway.as_deref().unwrap_or("?")
            ),
        };
        println!("port mapping: {state}");
    }
    if !st.stun.servers.is_empty() {
        let state = match (&st.stun.external, &st.stun.error) {
            (Some(a), _) => format!("QUIC port seen at {a}"),
            (None, Some(e)) => format!("failing: {e}"),
            (None, None) => "asking".to_string(),
        };
        println!("stun {}: {state}", st.stun.servers.join(", "));
    }
    Ok(())
}

fn rescan(home: &Home, folder_id: &str) -> Result<()> {
    let client = Client::connect(home)?;
    let ticket: RescanTicket = client.post(&format!("/rest/folders/{folder_id}/rescan"))?;
    let f = super::progress::wait_for_scan(&client, folder_id, ticket.scan)?;
    if let Some(e) = f.error {
        anyhow::bail!("folder {folder_id:?} cannot be scanned: {e}");
    }
    println!(
        "scanned {folder_id:?}: {} files, {} directories, {} bytes",
        f.local_files, f.local_directories, f.local_bytes
    );
    for e in f.errors.iter().take(10) {
        eprintln!("  ! {e}");
    }
    Ok(())
}

fn verify(home: &Home, folder_id: &str, json: bool) -> Result<()> {
    let v: crate::model::verify::Verified =
        Client::connect(home)?.get(&format!("/rest/folders/{folder_id}/verify"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for p in &v.problems {
            println!("  ! {p}");
        }
    }
    if !v.problems.is_empty() {
        anyhow::bail!(
            "folder {folder_id:?} differs from its index in {} places ({} entries, {} files rehashed)",
            v.problems.len(),
            v.entries,
            v.files
        );
    }
    if !json {
        println!(
            "folder {folder_id:?} matches its index: {} entries, {} files, {} bytes rehashed",
            v.entries, v.files, v.bytes
        );
    }
    Ok(())
}

fn doctor(home: &Home, folder: Option<&str>, path: Option<&str>, json: bool) -> Result<()> {
    let mut query = Vec::new();
    if let Some(f) = folder {
        query.push(("folder", f));
    }
    if let Some(p) = path {
        query.push(("path", p));
    }
    let found: Vec<Diagnosis> = Client::connect(home)?.get_with("/rest/doctor", &query)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    for d in &found {
        let what = match &d.path {
            Some(p) => format!("{p:?} in folder {:?}", d.folder),
            None => format!("folder {:?}", d.folder),
        };
        if d.in_sync {
            println!("{what}: in sync");
            continue;
        }
        println!("{what}: not in sync");
        for f in &d.findings {
            match &f.name {
                Some(n) if d.path.as_deref() != Some(n.as_str()) => {
                    println!("  - {n}: {} [{}]", f.message, f.code)
                }
                _ => println!("  - {} [{}]", f.message, f.code),
            }
            if let Some(h) = &f.hint {
                println!("    to fix: {h}");
            }
        }
    }
    Ok(())
}

fn versions(home: &Home, folder_id: &str, path: Option<&str>, json: bool) -> Result<()> {
    let list: Vec<Version> = Client::connect(home)?.get_with(
        &format!("/rest/folders/{folder_id}/versions"),
        &[("path", path.unwrap_or(""))],
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!("no versions kept");
    } else {
        for v in &list {
            println!("{}  {:>10}  {}", v.at_local, v.size, v.name);
        }
    }
    Ok(())
}

fn restore(home: &Home, folder_id: &str, path: &str, at: Option<&str>) -> Result<()> {
    let at = at.map(parse_local_time).transpose()?.map(|t| t.to_string());
    let mut query = vec![("path", path)];
    if let Some(t) = &at {
        query.push(("at", t));
    }
    let client = Client::connect(home)?;
    let r: Restored = client.post_with(&format!("/rest/folders/{folder_id}/restore"), &query)?;
    super::progress::wait_for_scan(&client, folder_id, r.scan)?;
    println!(
        "restored {:?} as it was at {} ({} bytes)",
        r.version.name, r.version.at_local, r.version.size
    );
    Ok(())
}

/// A local time as users write it, in Unix seconds.
fn parse_local_time(s: &str) -> Result<i64> {
    use chrono::{Local, NaiveDateTime, TimeZone};
    let formats = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y%m%d-%H%M%S",
    ];
    let t = formats
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(23, 59, 59))
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--at {s:?}: use a local time like 2026-12-02 10:15:00 or 20261202-101500"
            )
        })?;
    let t = Local
        .from_local_datetime(&t)
        .earliest()
        .ok_or_else(|| anyhow::anyhow!("--at {s:?} does not exist in local time"))?;
    Ok(t.timestamp())
}

/// Accepts what the delete guard holds and waits for the scan that
/// carries it out.
fn resume_deletes(home: &Home, folder_id: &str) -> Result<()> {
    let client = Client::connect(home)?;
    let ticket: RescanTicket = client.post(&format!("/rest/folders/{folder_id}/accept-deletes"))?;
    let f = super::progress::wait_for_scan(&client, folder_id, ticket.scan)?;
    // A remote update's deletions run in the pull after this scan; our
    // own are announced by it, unless it found the folder changed again.
    if let (Some(e), _) | (None, Some(e)) = (f.error, f.hold.filter(|_| f.state == "paused")) {
        anyhow::bail!("folder {folder_id:?}: {e}");
    }
    println!(
        "deletions accepted in {folder_id:?}: {} files, {} directories, {} bytes here",
        f.local_files, f.local_directories, f.local_bytes
    );
    Ok(())
}

fn pending(home: &Home, json: bool) -> Result<()> {
    let p: Pending = Client::connect(home)?.get("/rest/pending")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        if p.devices.is_empty() {
            println!("no pending devices");
        } else {
            for d in &p.devices {
                println!("{}  {:<16}  from {}", d.id, d.name, d.address);
            }
            println!("accept one with `ferrosync device add ID`");
        }
        if p.folders.is_empty() {
            println!("no pending folders");
        } else {
            for f in &p.folders {
                println!("folder {:<16} {:?} offered by {}", f.id, f.label, f.device);
            }
            println!("accept one with `ferrosync folder add ID PATH --share DEVICE`");
        }
    }
    Ok(())
}
