//! What a line typed in the full-screen client asks for.

/// The commands, as `/help` lists them.
pub const HELP: &str = "/edit [ID] TEXT · /delete [ID] · /react [ID] EMOJI · /unreact [ID] EMOJI · \
/invite USER · /dm USER · /group NAME USER… · /switch NAME (or Tab) · /who · /safety [USER] · /quit. \
Without ID: your newest message (for /react: the newest from the others). Esc hides this.";

/// A line typed in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Send this text (a line not starting with `/`; `//` sends one `/`).
    Send(String),
    /// Replace the text of a message of this user's: `ID TEXT`, or `TEXT`
    /// for the newest one (the ID is resolved against the messages shown).
    Edit(String),
    /// Delete a message of this user's: `ID`, or the newest one.
    Delete(Option<String>),
    /// React to a message: `ID EMOJI`, or `EMOJI` for the newest message
    /// from someone else.
    React { args: String, remove: bool },
    /// Add a user to the current conversation.
    Invite(String),
    /// Open (or start) the direct conversation with a user.
    Dm(String),
    /// Start a group.
    Group { name: String, users: Vec<String> },
    /// Show another conversation.
    Switch(String),
    /// List the members and who is online.
    Who,
    /// Show the safety number with a user (the direct partner by default).
    Safety(Option<String>),
    /// Show the commands.
    Help,
    /// Leave the client.
    Quit,
    /// A command with missing arguments or an unknown one: say how to use it.
    Usage(&'static str),
}

/// Parses one submitted line (already trimmed of its line end).
pub fn parse(line: &str) -> Option<Input> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Some(Input::Send(format!("/{rest}")));
    }
    let Some(cmd) = line.strip_prefix('/') else {
        return Some(Input::Send(line.to_owned()));
    };
    let (name, args) = match cmd.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (cmd, ""),
    };
    let arg = (!args.is_empty()).then(|| args.to_owned());
    let words: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    Some(match name {
        "edit" | "e" => match arg {
            Some(a) => Input::Edit(a),
            None => Input::Usage("/edit [ID] TEXT: replaces your newest message's text (or message ID's)"),
        },
        "delete" | "del" | "d" => Input::Delete(words.first().cloned()),
        "react" | "r" | "unreact" => match arg {
            Some(a) => Input::React {
                args: a,
                remove: name == "unreact",
            },
            None => Input::Usage("/react [ID] EMOJI: reacts to the newest message from someone else (or message ID)"),
        },
        "invite" | "add" => match words.as_slice() {
            [user] => Input::Invite(user.clone()),
            _ => Input::Usage("/invite USER: adds USER (all their devices) to this conversation"),
        },
        "dm" | "open" => match words.as_slice() {
            [user] => Input::Dm(user.clone()),
            _ => Input::Usage("/dm USER: opens or starts the direct conversation with USER"),
        },
        "group" | "new" => match words.split_first() {
            Some((name, users)) if !users.is_empty() => Input::Group {
                name: name.clone(),
                users: users.to_vec(),
            },
            _ => Input::Usage("/group NAME USER…: starts a group NAME with these users"),
        },
        "switch" | "s" | "go" => match arg {
            Some(a) => Input::Switch(a),
            None => Input::Usage("/switch NAME: shows that conversation (Tab goes to the next one)"),
        },
        "who" | "members" => Input::Who,
        "safety" => Input::Safety(words.first().cloned()),
        "help" | "h" | "?" => Input::Help,
        "quit" | "q" | "exit" => Input::Quit,
        _ => Input::Usage(HELP),
    })
}

/// Whether `word` could be (a prefix of) a message id.
pub fn looks_like_id(word: &str) -> bool {
    word.len() >= 4 && word.len() <= 32 && word.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_commands() {
        assert_eq!(parse("  "), None);
        assert_eq!(parse("hello"), Some(Input::Send("hello".into())));
        assert_eq!(parse("//shrug"), Some(Input::Send("/shrug".into())));
        assert_eq!(parse("/edit ab12 new text"), Some(Input::Edit("ab12 new text".into())));
        assert_eq!(parse("/delete"), Some(Input::Delete(None)));
        assert_eq!(parse("/delete ab12"), Some(Input::Delete(Some("ab12".into()))));
        assert_eq!(
            parse("/unreact 👍"),
            Some(Input::React {
                args: "👍".into(),
                remove: true
            })
        );
        assert_eq!(parse("/invite carol"), Some(Input::Invite("carol".into())));
        assert_eq!(
            parse("/group team bob carol"),
            Some(Input::Group {
                name: "team".into(),
                users: vec!["bob".into(), "carol".into()]
            })
        );
        assert!(matches!(parse("/invite"), Some(Input::Usage(_))));
        assert!(matches!(parse("/nope"), Some(Input::Usage(_))));
        assert_eq!(parse("/quit"), Some(Input::Quit));
        assert!(looks_like_id("ab12"));
        assert!(!looks_like_id("abc"));
        assert!(!looks_like_id("cafe!"));
    }
}
