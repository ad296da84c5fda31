//! `doctor`: why a folder, or one file in it, is not in sync. Everything
//! the daemon knows is asked in turn (the folder's state and guards, the
//! watch, the disk, the devices and their indexes, the need-set, the last
//! pull's errors, ignores here and there, conflicts) and each reason found
//! is said with what to do about it.

use serde::{Deserialize, Serialize};

use proto::version::Ordering as VersionOrdering;
use proto::DeviceId;

use crate::config::FolderType;
use crate::index::{DbError, FLAG_IGNORED, FLAG_RECEIVE_ONLY, LOCAL};
use crate::model::folder::{FolderHandle, FolderState};
use crate::peer::Peers;

/// Needed names the folder diagnosis looks at one by one.
const NAMES_SHOWN: usize = 10;

/// What the doctor found for a folder (and a file, if one was asked for).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnosis {
    /// The folder.
    pub folder: String,
    /// The file asked about, if any.
    pub path: Option<String>,
    /// Nothing stands in the way: everything here is as everywhere.
    pub in_sync: bool,
    /// Each reason found, most important first.
    pub findings: Vec<Finding>,
}

/// One reason.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// A stable name for it (`error`, `paused`, `deletes_held`,
    /// `remote_deletes_held`, `disk_space`, `watch_limit`, `not_shared`,
    /// `device_offline`, `no_index`, `needed`, `pull_error`,
    /// `receive_only_change`, `send_only`, `conflict`, `ignored_here`,
    /// `ignored_there`, `not_found`, `waiting_for_device`, `no_source`,
    /// `not_yet_at_device`).
    pub code: String,
    /// The file it is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// What to do about it, if anything can be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

fn finding(code: &str, name: Option<&str>, message: String, hint: Option<String>) -> Finding {
    Finding {
        code: code.to_string(),
        name: name.map(str::to_string),
        message,
        hint,
    }
}

/// Diagnoses folder `h` as a whole, or the file `path` in it.
pub fn diagnose(h: &FolderHandle, peers: &Peers, path: Option<&str>) -> Result<Diagnosis, DbError> {
    let mut findings = folder_findings(h, peers)?;
    match path {
        Some(p) => findings.extend(file_findings(h, peers, p.trim_matches('/'))?),
        None => {
            let names: Vec<String> = h
                .index
                .need_summaries()
                .take(NAMES_SHOWN)
                .map(|r| r.map(|(n, _)| n))
                .collect::<Result<_, _>>()?;
            for n in names {
                findings.extend(file_findings(h, peers, &n)?);
            }
            findings.extend(conflicts(h)?);
        }
    }
    Ok(Diagnosis {
        folder: h.config.id.clone(),
        path: path.map(str::to_string),
        in_sync: findings.is_empty(),
        findings,
    })
}

/// What holds the whole folder back.
fn folder_findings(h: &FolderHandle, peers: &Peers) -> Result<Vec<Finding>, DbError> {
    let id = &h.config.id;
    let st = h.status();
    let mut out = Vec::new();
    match &st.state {
        FolderState::Error(e) => out.push(finding("error", None, e.clone(), None)),
        FolderState::Paused(None) => out.push(finding(
            "paused",
            None,
            "the folder is paused: nothing is scanned or pulled".into(),
            Some(format!("ferrosync folder resume {id}")),
        )),
        FolderState::Paused(Some(why)) => out.push(finding(
            "deletes_held",
            None,
            why.clone(),
            Some(format!("ferrosync folder resume {id} --accept-deletes")),
        )),
        FolderState::NoSpace(why) => out.push(finding(
            "disk_space",
            None,
            why.clone(),
            Some("free space on that disk".into()),
        )),
        _ => {}
    }
    if st.deletes_held > 0 {
        out.push(finding(
            "remote_deletes_held",
            None,
            format!(
                "a remote update would delete {} of this folder's files; the deletions wait for confirmation",
                st.deletes_held
            ),
            Some(format!("ferrosync folder resume {id} --accept-deletes")),
        ));
    }
    if let Some(p) = st.watch.problem() {
        out.push(finding("watch_limit", None, p, None));
    }
    if h.config.devices.is_empty() {
        out.push(finding(
            "not_shared",
            None,
            "the folder is shared with no device".into(),
            Some(format!("ferrosync folder share {id} DEVICE-ID")),
        ));
    }
    for d in &h.config.devices {
        let n = peers.index.device_number(d)?;
        let meta = h.index.device_meta(n)?;
        if peers.session(d).is_none() {
            out.push(finding(
                "device_offline",
                None,
                format!("device {} is not connected", device_name(peers, d)),
                Some("start ferrosync (or Syncthing) there; `ferrosync status` shows how discovery fares".into()),
            ));
        } else if meta.max_sequence == 0 && meta.index_id == 0 {
            out.push(finding(
                "no_index",
                None,
                format!(
                    "device {} is connected but has sent no index for this folder",
                    device_name(peers, d)
                ),
                Some(format!("share folder {id:?} with this device there")),
            ));
        }
    }
    let local = h.index.device_meta(LOCAL)?;
    if h.config.kind == FolderType::ReceiveOnly {
        let changed = h
            .index
            .entries(LOCAL)
            .filter(|e| e.as_ref().is_ok_and(|e| e.flags & FLAG_RECEIVE_ONLY != 0))
            .count();
        if changed > 0 {
            out.push(finding(
                "receive_only_change",
                None,
                format!("{changed} local changes are kept here and never sent (the folder is receive-only)"),
                Some(format!("ferrosync folder revert {id}")),
            ));
        }
    }
    let need = h.index.folder_meta()?.need;
    let needed = need.files + need.directories + need.symlinks + need.deleted;
    if h.config.kind == FolderType::SendOnly && needed > 0 {
        out.push(finding(
            "send_only",
            None,
            format!(
                "{needed} changes from other devices are not applied (the folder is send-only)"
            ),
            Some(format!("ferrosync folder override {id}")),
        ));
    } else if needed > 0 {
        out.push(finding(
            "needed",
            None,
            format!(
                "{needed} entries ({} bytes) are still to be brought here; {} files are here",
                need.bytes, local.counts.files
            ),
            None,
        ));
    }
    Ok(out)
}

/// Why `name` differs here from the global state, if it does.
fn file_findings(h: &FolderHandle, peers: &Peers, name: &str) -> Result<Vec<Finding>, DbError> {
    let mut out = Vec::new();
    let n = Some(name);
    let local = h.index.get(LOCAL, name)?;
    let global = h.index.global_file(name)?;
    let ignored_here = peers
        .ignores(&h.config)
        .map(|i| i.matches(name).ignored)
        .unwrap_or(false)
        || local.as_ref().is_some_and(|l| l.flags & FLAG_IGNORED != 0);
    if ignored_here {
        out.push(finding(
            "ignored_here",
            n,
            format!("{name:?} is ignored here by the folder's .stignore"),
            Some("edit .stignore in the folder root".into()),
        ));
        return Ok(out);
    }
    if local.is_none() && global.is_none() {
        out.push(finding(
            "not_found",
            n,
            format!("no device has {name:?}, as far as this one knows (not scanned yet?)"),
            Some(format!("ferrosync folder rescan {}", h.config.id)),
        ));
        return Ok(out);
    }
    for e in h
        .status()
        .pull_errors
        .iter()
        .filter(|e| e.name.as_deref() == Some(name))
    {
        out.push(finding("pull_error", n, e.kind.to_string(), None));
    }
    let Some((g, ginfo)) = global else {
        return Ok(out);
    };
    let mine = local.as_ref().map(|l| &l.info.version);
    let order = mine.map(|v| v.compare(&g.version));
    if local
        .as_ref()
        .is_some_and(|l| l.flags & FLAG_RECEIVE_ONLY != 0)
    {
        out.push(finding(
            "receive_only_change",
            n,
            format!("{name:?} was changed here and is never sent (receive-only)"),
            Some(format!("ferrosync folder revert {}", h.config.id)),
        ));
    }
    match order {
        Some(VersionOrdering::Equal) if !g.devices.is_empty() => {
            // We have the global version: who does not?
            for d in &h.config.devices {
                let num = peers.index.device_number(d)?;
                let theirs = h.index.get(num, name)?;
                let who = device_name(peers, d);
                match theirs {
                    Some(t) if t.info.invalid => out.push(finding(
                        "ignored_there",
                        n,
                        format!("device {who} ignores {name:?} (or has a change of it it does not send)"),
                        None,
                    )),
                    Some(t) if t.info.version == g.version => {}
                    _ if peers.session(d).is_none() => out.push(finding(
                        "not_yet_at_device",
                        n,
                        format!("device {who} does not have this version yet and is not connected"),
                        None,
                    )),
                    _ => out.push(finding(
                        "not_yet_at_device",
                        n,
                        format!("device {who} does not have this version yet (it is connected: it may be pulling it)"),
                        None,
                    )),
                }
            }
        }
        _ => {
            // The global version is elsewhere: who could send it?
            let holders: Vec<DeviceId> = g
                .devices
                .iter()
                .filter(|&&d| d != LOCAL)
                .filter_map(|&d| peers.index.device_by_number(d).ok().flatten())
                .collect();
            let online: Vec<&DeviceId> = holders
                .iter()
                .filter(|d| peers.session(d).is_some())
                .collect();
            let what = if ginfo.deleted {
                "its deletion"
            } else {
                "the newest version"
            };
            if holders.is_empty() {
                out.push(finding(
                    "no_source",
                    n,
                    format!("no device announces {what} of {name:?} as something it can send"),
                    None,
                ));
            } else if online.is_empty() && !ginfo.deleted {
                let names: Vec<String> = holders.iter().map(|d| device_name(peers, d)).collect();
                out.push(finding(
                    "waiting_for_device",
                    n,
                    format!(
                        "only {} ha{} {what} of {name:?}, and none is connected",
                        names.join(", "),
                        if names.len() == 1 { "s" } else { "ve" }
                    ),
                    Some("connect one of them".into()),
                ));
            } else if h.config.kind == FolderType::SendOnly {
                out.push(finding(
                    "send_only",
                    n,
                    format!("{what} of {name:?} is not applied here (send-only)"),
                    Some(format!("ferrosync folder override {}", h.config.id)),
                ));
            } else if out.is_empty() {
                out.push(finding(
                    "needed",
                    n,
                    format!("{what} of {name:?} is still to be brought here"),
                    None,
                ));
            }
        }
    }
    if let Some(base) = name
        .rsplit('/')
        .next()
        .filter(|b| b.contains(".sync-conflict-"))
    {
        out.push(finding(
            "conflict",
            n,
            format!(
                "{base:?} is a conflict copy: the version of the file that lost a concurrent edit"
            ),
            Some("keep the content you want under the original name and delete the copy".into()),
        ));
    }
    Ok(out)
}

/// The conflict copies in the folder.
fn conflicts(h: &FolderHandle) -> Result<Vec<Finding>, DbError> {
    let mut out = Vec::new();
    for e in h.index.entries(LOCAL) {
        let e = e?;
        let name = e.info.name.as_str();
        if !e.info.deleted
            && name
                .rsplit('/')
                .next()
                .is_some_and(|b| b.contains(".sync-conflict-"))
        {
            out.push(finding(
                "conflict",
                Some(name),
                format!("{name:?} is a conflict copy: the version of a file that lost a concurrent edit"),
                Some("keep the content you want under the original name and delete the copy".into()),
            ));
        }
    }
    Ok(out)
}

fn device_name(peers: &Peers, id: &DeviceId) -> String {
    let short = id.to_string().chars().take(7).collect::<String>();
    match peers.config().device(id).map(|d| d.name.clone()) {
        Some(n) if !n.is_empty() => format!("{n} ({short})"),
        _ => short,
    }
}
