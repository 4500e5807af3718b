//! `hush`: a terminal chat client on the hush SDK.
//!
//! Scriptable subcommands (`hush send`, `hush read --json`, ...) and
//! `hush chat`: full-screen on a terminal (`tui/`), line by line otherwise.
//! Run `hush --help`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hush_sdk::{Client, Event, GroupId, Message, SendOutcome, Trust};
use serde::{Deserialize, Serialize};

mod json;
mod tui;

#[derive(Parser)]
#[command(name = "hush", about = "hush: end-to-end-encrypted chat in the terminal")]
struct Cli {
    /// This device's data directory.
    #[arg(long, env = "HUSH_DIR", default_value = "hush-client")]
    dir: PathBuf,
    /// How long to wait for the relay in one-shot commands, in seconds.
    #[arg(long, default_value_t = 10)]
    wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates this device's identity for user NAME and registers it; or,
    /// with --link, makes this a new device of an existing user (run
    /// `hush link` on one of their devices for the code).
    Init {
        /// The user id.
        #[arg(long, required_unless_present = "link", conflicts_with = "link")]
        name: Option<String>,
        /// The code shown by `hush link` on an existing device.
        #[arg(long, value_name = "CODE")]
        link: Option<String>,
        /// The relay, e.g. wss://127.0.0.1:7443/ws.
        #[arg(long, env = "HUSH_RELAY", default_value = "wss://127.0.0.1:7443/ws")]
        relay: String,
        /// The relay's certificate SHA-256 (64 hex digits), or a file holding
        /// it (the relay writes `<data-dir>/dev-cert.sha256`).
        #[arg(long, env = "HUSH_CERT", default_value = "hush-data/dev-cert.sha256")]
        cert: String,
        /// The identity authority's public key (64 hex digits): this device
        /// then takes in only devices the authority certified.
        #[arg(long, value_name = "HEX")]
        authority_key: Option<String>,
        /// The authority's certificate for this device's key (128 hex
        /// digits), made for the key `hush device-key` printed.
        #[arg(long, value_name = "HEX", requires = "authority_key")]
        certificate: Option<String>,
    },
    /// Makes this device's key before `init` (kept in the data directory)
    /// and prints it, for an identity authority to certify.
    DeviceKey,
    /// A stand-in for an app backend's identity authority, for trying
    /// certificates out: makes an authority key, certifies device keys.
    Authority {
        #[command(subcommand)]
        action: AuthorityAction,
    },
    /// Shows who this device is.
    Whoami,
    /// Links a new device to your user: shows a code to give to
    /// `hush init --link CODE` on the new device, then adds it to your
    /// conversations and sends it their history (end-to-end encrypted).
    Link {
        /// How long to wait for the new device, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Creates a group with these users (and your other devices).
    Create {
        /// A local label for the group.
        #[arg(long, default_value = "group")]
        name: String,
        /// Users to add.
        users: Vec<String>,
    },
    /// Opens (or creates) the direct conversation with USER; prints its id.
    Dm {
        /// The partner.
        user: String,
    },
    /// Adds every device of USER to GROUP.
    Invite {
        /// Group id (hex prefix), label or direct partner.
        group: String,
        /// The user.
        user: String,
    },
    /// Removes every device of USER from GROUP.
    Kick {
        /// Group.
        group: String,
        /// The user.
        user: String,
    },
    /// Renames GROUP for every member (the name is shared end-to-end
    /// encrypted; direct conversations keep the partner's name).
    Rename {
        /// Group.
        group: String,
        /// The new name.
        name: String,
    },
    /// Leaves GROUP.
    Leave {
        /// Group.
        group: String,
    },
    /// Lists your groups.
    #[command(after_help = json::GROUP_SHAPE)]
    Groups {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Lists the members of GROUP.
    Members {
        /// Group.
        group: String,
    },
    /// Sends TEXT to GROUP, or to USER in your direct conversation (started if there is none); queued and sent exactly once if offline.
    Send {
        /// A group (label or id prefix) or a user.
        group: String,
        /// The text.
        text: String,
    },
    /// Edits one of your messages.
    Edit {
        /// Group.
        group: String,
        /// Message id.
        id: String,
        /// New text.
        text: String,
    },
    /// Deletes one of your messages.
    Delete {
        /// Group.
        group: String,
        /// Message id.
        id: String,
    },
    /// Reacts to a message.
    React {
        /// Group.
        group: String,
        /// Message id.
        id: String,
        /// Emoji.
        emoji: String,
        /// Take the reaction back.
        #[arg(long)]
        remove: bool,
    },
    /// Fetches new messages and prints a group's history (all groups if none given).
    #[command(after_help = json::MESSAGE_SHAPE)]
    Read {
        /// Group.
        group: Option<String>,
        /// JSON lines output.
        #[arg(long)]
        json: bool,
        /// How many messages per group.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Also send read receipts.
        #[arg(long)]
        mark: bool,
    },
    /// Lists the registered devices of USER (yours if none given).
    Devices {
        /// The user.
        user: Option<String>,
    },
    /// Revokes one of your devices (by id) and removes it from every group.
    RemoveDevice {
        /// Device id (32 hex digits).
        device: String,
    },
    /// Shows the safety number with USER: compare it with theirs (in
    /// person, or over a channel you trust), then run `hush verify`.
    Safety {
        /// The partner.
        user: String,
    },
    /// Marks USER verified: NUMBER is the safety number you compared with
    /// theirs. Conversations with USER stay verified until their devices change.
    Verify {
        /// The partner.
        user: String,
        /// The safety number compared (spaces optional).
        number: Vec<String>,
    },
    /// Chats in CONVERSATION: full-screen when run on a terminal (Tab
    /// switches conversations, PgUp/PgDn scroll, /help lists commands), one
    /// line per message otherwise or with --lines.
    ///
    /// CONVERSATION is a partner's user name, a group's label or a prefix of
    /// its id; a user you have no conversation with yet gets a new direct
    /// one. Without it, full-screen mode opens your first conversation.
    #[command(visible_alias = "tui")]
    Chat {
        /// Partner, group label or group id.
        conversation: Option<String>,
        /// Line mode even on a terminal: each line typed is sent, events are
        /// printed as they happen (for scripts).
        #[arg(long)]
        lines: bool,
    },
}

#[derive(Subcommand)]
enum AuthorityAction {
    /// Writes a new authority secret key to FILE and prints its public key.
    New {
        /// Where the secret goes (created; must not exist).
        file: PathBuf,
    },
    /// Prints the certificate of DEVICE_KEY as a device of USER.
    Certify {
        /// The authority's secret key file.
        file: PathBuf,
        /// The user.
        user: String,
        /// The device's public key (64 hex digits, from `hush device-key`).
        device_key: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Settings {
    relay: String,
    cert_sha256: String,
    /// The identity authority's public key, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority: Option<String>,
}

/// Writes a secret to a new file only its owner can read.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Where `hush device-key` keeps the key of a device not initialised yet.
fn seed_path(dir: &Path) -> PathBuf {
    dir.join("device.seed")
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(s.trim()).with_context(|| format!("{what}: expected 64 hex digits"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what}: expected 64 hex digits"))
}

/// What `hush` prints when a partner's devices change.
fn devices_line(
    user: &hush_sdk::UserId,
    added: &[hush_sdk::DeviceId],
    removed: &[hush_sdk::DeviceId],
    first_seen: bool,
    safety_number: &str,
) -> String {
    let list = |d: &[hush_sdk::DeviceId]| d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    if first_seen {
        format!(
            "* {user} uses {} device(s): {}; safety number {safety_number}",
            added.len(),
            list(added)
        )
    } else {
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("new device(s) {}", list(added)));
        }
        if !removed.is_empty() {
            parts.push(format!("removed device(s) {}", list(removed)));
        }
        format!(
            "! {user}'s devices changed ({}): new safety number {safety_number}, compare it again",
            parts.join("; ")
        )
    }
}

fn settings_path(dir: &Path) -> PathBuf {
    dir.join("client.json")
}

fn parse_cert(cert: &str) -> Result<[u8; 32]> {
    let text = if Path::new(cert).is_file() {
        std::fs::read_to_string(cert).with_context(|| format!("reading {cert}"))?
    } else {
        cert.to_owned()
    };
    let bytes = hex::decode(text.trim()).context("certificate hash: expected 64 hex digits or a file")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("certificate hash: expected 32 bytes"))
}

async fn open(dir: &Path, user: Option<&str>) -> Result<Client> {
    open_with(dir, user, None).await
}

/// Opens the client, creating the identity with `certificate` if given.
async fn open_with(dir: &Path, user: Option<&str>, certificate: Option<[u8; 64]>) -> Result<Client> {
    let s: Settings = serde_json::from_slice(
        &std::fs::read(settings_path(dir))
            .with_context(|| format!("no hush identity in {} (run `hush init` first)", dir.display()))?,
    )?;
    let cert = parse_cert(&s.cert_sha256)?;
    let mut b = Client::builder()
        .relay(s.relay)
        .trust(Trust::CertSha256(cert))
        .data_dir(dir);
    if let Some(u) = user {
        b = b.user(u);
    }
    if let Some(a) = &s.authority {
        b = b.identity_authority(hex32(a, "authority key")?);
    }
    if let Some(c) = certificate {
        let seed = hex32(
            &std::fs::read_to_string(seed_path(dir)).context("no device key here: run `hush device-key` first")?,
            "device key",
        )?;
        b = b.device_seed(seed).identity_certificate(c);
    }
    Ok(b.open().await?)
}

/// Catches up with the relay if it can be reached in time (commands then
/// work on what this device has); a revoked device stops here.
async fn try_sync(client: &Client, wait: Duration) -> Result<()> {
    match client.sync(wait).await {
        Err(e @ hush_sdk::Error::Revoked) => Err(e.into()),
        _ => Ok(()),
    }
}

async fn connected(client: &Client, wait: Duration) -> Result<()> {
    match client.wait_connected(wait).await {
        Err(e @ hush_sdk::Error::Revoked) => Err(e.into()),
        r => r.context("cannot reach the relay"),
    }
}

fn print_message(m: &Message) {
    let mut line = format!(
        "[{}] {}: {}",
        &m.id[..8],
        m.sender.user,
        if m.deleted {
            "(deleted)".to_owned()
        } else {
            tui::clean(&m.text)
        }
    );
    if m.edited {
        line.push_str(" (edited)");
    }
    for (emoji, users) in &m.reactions {
        line.push_str(&format!(" {emoji}×{}", users.len()));
    }
    if m.own && !m.read_by.is_empty() {
        line.push_str(&format!(
            " ✓ read by {}",
            m.read_by.iter().map(|u| u.0.as_str()).collect::<Vec<_>>().join(",")
        ));
    }
    println!("{line}");
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The local time zone for the full-screen client's clock. Read before
    // any other thread exists: the lookup is refused in a multi-threaded
    // process (the C library's time zone state is not thread-safe).
    let clock = tui::Clock {
        offset: time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli, clock))
}

async fn run(cli: Cli, clock: tui::Clock) -> Result<()> {
    let wait = Duration::from_secs(cli.wait);
    let dir = cli.dir.clone();
    match cli.command {
        Command::Init {
            name,
            link,
            relay,
            cert,
            authority_key,
            certificate,
        } => {
            let hash = parse_cert(&cert)?;
            std::fs::create_dir_all(&dir)?;
            if settings_path(&dir).exists() {
                bail!("{} already holds an identity", dir.display());
            }
            let authority = authority_key
                .map(|k| hex32(&k, "authority key").map(hex::encode))
                .transpose()?;
            let certificate: Option<[u8; 64]> = certificate
                .map(|c| -> Result<[u8; 64]> {
                    hex::decode(c.trim())
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .context("certificate: expected 128 hex digits")
                })
                .transpose()?;
            let s = Settings {
                relay,
                cert_sha256: hex::encode(hash),
                authority,
            };
            std::fs::write(settings_path(&dir), serde_json::to_vec_pretty(&s)?)?;
            let client = match (name, link) {
                (_, Some(code)) => {
                    println!("linking: waiting for the device that shows the code...");
                    let linked = Client::builder()
                        .relay(s.relay)
                        .trust(Trust::CertSha256(hash))
                        .data_dir(&dir)
                        .open_linked(&code, Duration::from_secs(600))
                        .await;
                    match linked {
                        Ok((client, _events)) => client,
                        Err(e) => {
                            let _ = std::fs::remove_file(settings_path(&dir));
                            bail!("linking failed: {e}");
                        }
                    }
                }
                (Some(name), None) => open_with(&dir, Some(&name), certificate).await?,
                (None, None) => bail!("give --name NAME for a new user, or --link CODE"),
            };
            connected(&client, wait).await?;
            client.sync(wait).await?;
            println!("{} device {}", client.user(), client.device_id());
            client.close().await;
        }
        Command::DeviceKey => {
            std::fs::create_dir_all(&dir)?;
            if settings_path(&dir).exists() {
                bail!("{} already holds an identity", dir.display());
            }
            let path = seed_path(&dir);
            let seed = match std::fs::read_to_string(&path) {
                Ok(s) => hex32(&s, "device key")?,
                Err(_) => {
                    let seed: [u8; 32] = rand::random();
                    write_secret(&path, &hex::encode(seed))?;
                    seed
                }
            };
            let id = hush_sdk::wire::Identity::from_seed("-", seed);
            println!("device key: {}", hex::encode(id.public_key()));
            println!("device id:  {}", id.device());
        }
        Command::Authority { action } => match action {
            AuthorityAction::New { file } => {
                let secret: [u8; 32] = rand::random();
                write_secret(&file, &hex::encode(secret))?;
                let key = ed25519_dalek::SigningKey::from_bytes(&secret);
                println!("authority key: {}", hex::encode(key.verifying_key().to_bytes()));
            }
            AuthorityAction::Certify { file, user, device_key } => {
                let secret = hex32(&std::fs::read_to_string(&file)?, "authority secret")?;
                let key = ed25519_dalek::SigningKey::from_bytes(&secret);
                let device = hex32(&device_key, "device key")?;
                let cert = hush_crypto::certify(&key, &hush_sdk::UserId(user), &device);
                println!("{}", hex::encode(cert));
            }
        },
        Command::Link { timeout } => {
            let client = ready(&dir, wait).await?;
            let pending = client.link_device().await?;
            println!("On the new device, run:");
            println!("  hush --dir NEW_DIR init --link {}", pending.code());
            println!("(waiting up to {timeout} s; the code works once)");
            let device = pending.complete(Duration::from_secs(timeout)).await?;
            println!("linked device {device}: added to your conversations, history sent");
            client.close().await;
        }
        Command::Whoami => {
            let client = open(&dir, None).await?;
            println!("{} device {}", client.user(), client.device_id());
            client.close().await;
        }
        Command::Create { name, users } => {
            let client = open(&dir, None).await?;
            connected(&client, wait).await?;
            let refs: Vec<&str> = users.iter().map(String::as_str).collect();
            let g = client.create_group(&name, &refs).await?;
            // The group's shared name goes out before this exits.
            let _ = client.flush(wait).await;
            println!("{}", g.to_hex());
            client.close().await;
        }
        Command::Dm { user } => {
            let client = open(&dir, None).await?;
            connected(&client, wait).await?;
            client.sync(wait).await?;
            let g = client.direct(&user).await?;
            println!("{}", g.to_hex());
            client.close().await;
        }
        Command::Invite { group, user } => {
            let client = ready(&dir, wait).await?;
            let g = client.find_group(&group).await?;
            client.add_user(&g, &user).await?;
            let _ = client.flush(wait).await;
            client.close().await;
        }
        Command::Kick { group, user } => {
            let client = ready(&dir, wait).await?;
            let g = client.find_group(&group).await?;
            client.remove_user(&g, &user).await?;
            client.close().await;
        }
        Command::Leave { group } => {
            let client = ready(&dir, wait).await?;
            let g = client.find_group(&group).await?;
            client.leave(&g).await?;
            client.close().await;
        }
        Command::Groups { json } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            for g in client.groups().await? {
                if json {
                    println!("{}", serde_json::to_string(&json::JsonGroup::from(&g))?);
                } else {
                    let users: std::collections::BTreeSet<&str> = g.members.iter().map(|m| m.user.0.as_str()).collect();
                    let trust = if g.unverified_members > 0 {
                        "  ! forged member"
                    } else if g.verified || g.own_devices {
                        ""
                    } else {
                        "  (unverified)"
                    };
                    println!(
                        "{}  {}  {}{trust}",
                        g.group.to_hex(),
                        g.direct_with.as_deref().unwrap_or(&g.name),
                        users.into_iter().collect::<Vec<_>>().join(",")
                    );
                }
            }
            client.close().await;
        }
        Command::Members { group } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            let g = client.find_group(&group).await?;
            for m in client.members(&g).await? {
                println!("{} {}", m.user, m.device);
            }
            client.close().await;
        }
        Command::Send { group, text } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            // As in `chat`: a user's name is the direct conversation with
            // them, started if there is none yet.
            let g = conversation_named(&client, &group).await?;
            let id = client.send_text(&g, &text).await?;
            finish_send(&client, &id, wait).await?;
        }
        Command::Edit { group, id, text } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            let g = client.find_group(&group).await?;
            let full = full_id(&client, &g, &id).await?;
            let sent = client.edit(&g, &full, &text).await?;
            finish_send(&client, &sent, wait).await?;
        }
        Command::Delete { group, id } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            let g = client.find_group(&group).await?;
            let full = full_id(&client, &g, &id).await?;
            let sent = client.delete(&g, &full).await?;
            finish_send(&client, &sent, wait).await?;
        }
        Command::React {
            group,
            id,
            emoji,
            remove,
        } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            let g = client.find_group(&group).await?;
            let full = full_id(&client, &g, &id).await?;
            let sent = client.react(&g, &full, &emoji, remove).await?;
            finish_send(&client, &sent, wait).await?;
        }
        Command::Read {
            group,
            json,
            limit,
            mark,
        } => {
            let client = open(&dir, None).await?;
            if let Err(e) = client.sync(wait).await {
                eprintln!("(offline: showing local history: {e})");
            }
            let groups = match group {
                Some(g) => vec![client.find_group(&g).await?],
                None => client
                    .groups()
                    .await?
                    .into_iter()
                    .filter(|g| !g.own_devices)
                    .map(|g| g.group)
                    .collect(),
            };
            for g in groups {
                let mut page = client.history(&g, None, limit).await?;
                page.reverse();
                if !json {
                    println!("== {}", g.to_hex());
                }
                for m in &page {
                    if json {
                        println!("{}", serde_json::to_string(&json::JsonMessage::from(m))?);
                    } else {
                        print_message(m);
                    }
                }
                if mark {
                    client.mark_read(&g).await?;
                }
            }
            if mark {
                let _ = client.flush(wait).await;
            }
            client.close().await;
        }
        Command::Devices { user } => {
            let client = ready(&dir, wait).await?;
            let user = user.unwrap_or_else(|| client.user().0.clone());
            for d in client.devices(&user).await? {
                let me = if d.device == client.device_id() {
                    " (this device)"
                } else {
                    ""
                };
                println!("{}{me}", d.device);
            }
            client.close().await;
        }
        Command::RemoveDevice { device } => {
            let client = ready(&dir, wait).await?;
            let d = hush_sdk::DeviceId::from_hex(&device).context("device id: 32 hex digits")?;
            let report = client.remove_device(d).await;
            client.close().await;
            let report = report?;
            if report.revoked {
                println!("revoked {device}: the relay refuses it from now on and nothing adds it again");
            } else {
                println!("{device} was revoked already");
            }
            if report.removed_from.is_empty() {
                println!("it was in none of your conversations");
            } else {
                println!("removed it from {} conversation(s)", report.removed_from.len());
            }
        }
        Command::Safety { user } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            println!("{}", client.safety_number(&user).await?);
            client.close().await;
        }
        Command::Rename { group, name } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            let g = client.find_group(&group).await?;
            let id = client.rename(&g, &name).await?;
            finish_send(&client, &id, wait).await?;
        }
        Command::Verify { user, number } => {
            let client = open(&dir, None).await?;
            try_sync(&client, wait).await?;
            let r = client.mark_verified(&user, &number.join(" ")).await;
            client.close().await;
            r?;
            println!("{user} verified: their current devices are the ones you compared");
        }
        Command::Chat { conversation, lines } => {
            use std::io::IsTerminal as _;
            let full_screen = !lines && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
            let client = open(&dir, None).await?;
            if full_screen {
                eprintln!("connecting to the relay…");
            }
            if let Err(e) = client.sync(wait).await {
                eprintln!("(offline: {e}; showing what this device has)");
            }
            let group = match conversation {
                Some(name) => Some(conversation_named(&client, &name).await?),
                None if full_screen => None,
                None => bail!("name a conversation: hush chat CONVERSATION (hush groups lists them)"),
            };
            let result = match (full_screen, group) {
                (true, group) => tui::run(&client, group, clock).await,
                (false, Some(g)) => chat(&client, g).await,
                (false, None) => Ok(()),
            };
            client.close().await;
            result?;
        }
    }
    Ok(())
}

/// The conversation `name` means: the direct conversation with that user
/// (the most active one, should there be two), a group with that label or
/// id prefix, or else a new direct conversation with that user.
async fn conversation_named(client: &Client, name: &str) -> Result<GroupId> {
    match client.find_group(name).await {
        Ok(g) => return Ok(g),
        Err(e @ hush_sdk::Error::AmbiguousGroup { .. }) => return Err(e.into()),
        Err(_) => {}
    }
    if !client.is_connected() {
        bail!("no conversation {name} on this device, and the relay is not reachable to start one");
    }
    eprintln!("starting a direct conversation with {name}…");
    match client.direct(name).await {
        Ok(g) => Ok(g),
        Err(hush_sdk::Error::NoDevices(_)) => bail!(
            "no conversation {name} here, and the relay knows no user {name} to start one with \
             (has {name} run `hush init --name {name}`?)"
        ),
        Err(e) => Err(e).with_context(|| format!("starting a direct conversation with {name}")),
    }
}

async fn ready(dir: &Path, wait: Duration) -> Result<Client> {
    let client = open(dir, None).await?;
    connected(&client, wait).await?;
    client.sync(wait).await?;
    Ok(client)
}

async fn full_id(client: &Client, group: &GroupId, prefix: &str) -> Result<String> {
    let mut before = None;
    loop {
        let page = client.history(group, before, 500).await?;
        if page.is_empty() {
            bail!("no message {prefix} in this group");
        }
        if let Some(m) = page.iter().find(|m| m.id.starts_with(prefix)) {
            return Ok(m.id.clone());
        }
        before = page.last().map(|m| m.seq);
    }
}

/// Waits for the message to reach the relay, then says what became of it:
/// its id when stored, "(queued ...)" when the relay could not be reached in
/// time, an error (exit status 1) when the relay refused it.
async fn finish_send(client: &Client, id: &str, wait: Duration) -> Result<()> {
    let _ = client.flush(wait).await;
    let outcome = client.send_outcome(id);
    client.close().await;
    match outcome? {
        SendOutcome::Stored => println!("{id}"),
        SendOutcome::Queued => println!("{id} (queued: sent exactly once when hush next reaches the relay)"),
        SendOutcome::Failed(reason) => bail!("message {id} was not sent: {reason}"),
        other => bail!("message {id}: {other:?}"),
    }
    Ok(())
}

/// Interactive line mode: incoming messages, typing, presence and receipts
/// are printed as they happen; a line typed is sent. Commands start with `/`.
async fn chat(client: &Client, group: GroupId) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut events = client.events();
    let mut page = client.history(&group, None, 20).await?;
    page.reverse();
    println!("== chat in {} (/help for commands)", group.to_hex());
    for m in &page {
        print_message(m);
    }
    let _ = client.mark_read(&group).await;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut typing = false;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim().to_owned();
                if typing {
                    typing = false;
                    let _ = client.typing(&group, false).await;
                }
                if line.is_empty() {
                    continue;
                }
                if let Some(cmd) = line.strip_prefix('/') {
                    let mut parts = cmd.splitn(3, ' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some("quit"), _, _) => break,
                        (Some("typing"), _, _) => {
                            typing = true;
                            let _ = client.typing(&group, true).await;
                        }
                        (Some("edit"), Some(id), Some(text)) => {
                            let id = full_id(client, &group, id).await?;
                            client.edit(&group, &id, text).await?;
                        }
                        (Some("delete"), Some(id), _) => {
                            let id = full_id(client, &group, id).await?;
                            client.delete(&group, &id).await?;
                        }
                        (Some("react"), Some(id), Some(emoji)) => {
                            let id = full_id(client, &group, id).await?;
                            client.react(&group, &id, emoji, false).await?;
                        }
                        (Some("history"), n, _) => {
                            let n = n.and_then(|n| n.parse().ok()).unwrap_or(50);
                            let mut page = client.history(&group, None, n).await?;
                            page.reverse();
                            for m in &page { print_message(m); }
                        }
                        (Some("who"), _, _) => {
                            for p in client.presence(&group).await.unwrap_or_default() {
                                println!("* {} {}", p.user, if p.online { "online" } else { "offline" });
                            }
                        }
                        _ => println!("* commands: /typing /edit ID TEXT /delete ID /react ID EMOJI /history [N] /who /quit"),
                    }
                } else {
                    client.send_text(&group, &line).await?;
                }
            }
            ev = events.next() => {
                let Some(ev) = ev else { break };
                match ev {
                    Event::Message(m) if m.group == group => {
                        print_message(&m);
                        if !m.own { let _ = client.mark_read(&group).await; }
                    }
                    Event::Edited { group: g, id, text, by } if g == group => println!("* {} edited [{}]: {text}", by.user, &id[..8]),
                    Event::Deleted { group: g, id, by } if g == group => println!("* {} deleted [{}]", by.user, &id[..8]),
                    Event::Reaction { group: g, id, emoji, removed, by } if g == group => {
                        println!("* {} {} {emoji} on [{}]", by.user, if removed { "removed" } else { "reacted" }, &id[..8]);
                    }
                    Event::Receipt { group: g, ids, by } if g == group => println!("* {} read {} message(s)", by.user, ids.len()),
                    Event::Typing { group: g, by, active } if g == group && by.user != *client.user() => {
                        println!("* {} {}", by.user, if active { "is typing…" } else { "stopped typing" });
                    }
                    Event::Presence { member, online, .. } => println!("* {} is {}", member.user, if online { "online" } else { "offline" }),
                    Event::MemberAdded { group: g, member } if g == group => println!("* {} joined", member.user),
                    Event::GroupRenamed { group: g, name, by } if g == group => println!("* {} named the conversation {name:?}", by.user),
                    Event::MemberRemoved { group: g, member } if g == group => println!("* {} left", member.user),
                    Event::RosterMismatch { group: g, .. } if g == group => println!("! the relay removed you from this conversation, but no member's commit did: it no longer delivers it"),
                    Event::CommitRejected { group: g, reason, .. } if g == group => println!("! a member's change to this conversation was rejected ({reason}): the relay and the group disagree"),
                    Event::DevicesChanged { user, added, removed, first_seen, safety_number } => println!("{}", devices_line(&user, &added, &removed, first_seen, &safety_number)),
                    Event::IdentityRejected { group: g, user, device } if g == group => println!("! a member claims to be {user}, but {device} is not one of {user}'s devices: treat this conversation as not {user}'s"),
                    Event::Connection(c) => println!("* connection: {c:?}"),
                    _ => {}
                }
            }
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}
