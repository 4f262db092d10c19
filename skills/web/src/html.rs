//! HTML as readable text: the title, headings as `#`, list items as `-`,
//! links as `[text](url)`, preformatted blocks kept, scripts, styles and
//! navigation dropped, entities decoded, whitespace collapsed.
//!
//! Not a conforming HTML parser: a single pass over the tags that copes
//! with what pages are made of (unclosed paragraphs, stray `<`, comments,
//! attributes in any quoting) and never fails.

/// A page read as text.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub title: Option<String>,
    pub text: String,
}

/// Elements whose content is never text for a reader.
const DROPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "nav", "select",
    "button", "head",
];
/// Elements whose content is raw text up to their closing tag.
const RAW_TEXT: &[&str] = &["script", "style", "title", "textarea"];
/// Elements that start and end a block of text.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "table",
    "tr",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "blockquote",
    "figure",
    "figcaption",
    "address",
    "form",
    "fieldset",
    "details",
    "summary",
    "body",
    "html",
];

pub fn to_text(html: &str) -> Page {
    let mut reader = Reader {
        out: String::with_capacity(html.len() / 2),
        title: None,
        pre: 0,
        dropped: None,
        link: None,
    };
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        reader.text(&rest[..start]);
        rest = &rest[start..];
        rest = reader.markup(rest);
    }
    reader.text(rest);
    Page {
        title: reader.title.filter(|t| !t.is_empty()),
        text: tidy(&reader.out),
    }
}

struct Reader {
    out: String,
    title: Option<String>,
    /// Depth of `<pre>`: whitespace kept inside.
    pre: u32,
    /// Inside a dropped element: its name and how deep.
    dropped: Option<(String, u32)>,
    /// Inside `<a href>`: the target and where its text starts in `out`.
    link: Option<(String, usize)>,
}

impl Reader {
    fn text(&mut self, raw: &str) {
        if self.dropped.is_some() || raw.is_empty() {
            return;
        }
        let decoded = decode_entities(raw);
        if self.pre > 0 {
            self.out.push_str(&decoded);
            return;
        }
        for (index, word) in decoded.split_whitespace().enumerate() {
            let starts_with_space = index > 0 || decoded.starts_with(char::is_whitespace);
            if starts_with_space && !self.out.ends_with([' ', '\n']) && !self.out.is_empty() {
                self.out.push(' ');
            }
            self.out.push_str(word);
        }
        if decoded.ends_with(char::is_whitespace)
            && !decoded.trim().is_empty()
            && !self.out.ends_with([' ', '\n'])
        {
            self.out.push(' ');
        }
    }

    /// Read the markup at the start of `rest` (which starts with `<`) and
    /// return what follows it.
    fn markup<'a>(&mut self, rest: &'a str) -> &'a str {
        if let Some(comment) = rest.strip_prefix("<!--") {
            return comment.find("-->").map_or("", |end| &comment[end + 3..]);
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            return rest.find('>').map_or("", |end| &rest[end + 1..]);
        }
        let closing = rest.starts_with("</");
        let name_start = if closing { 2 } else { 1 };
        let name: String = rest[name_start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            // A `<` that starts no tag is text.
            self.text("<");
            return &rest[1..];
        }
        let Some(end) = tag_end(rest) else {
            return "";
        };
        let tag = &rest[..end];
        let after = &rest[end + 1..];
        if closing {
            self.close(&name);
            return after;
        }
        if RAW_TEXT.contains(&name.as_str()) {
            let (content, after) = raw_text(after, &name);
            if name == "title" && self.title.is_none() {
                self.title = Some(
                    decode_entities(content)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            } else if name == "textarea" {
                self.text(content);
            }
            return after;
        }
        let self_closing = tag.ends_with("/>");
        self.open(&name, tag, self_closing);
        after
    }

    fn open(&mut self, name: &str, tag: &str, self_closing: bool) {
        if let Some((dropped, depth)) = &mut self.dropped {
            if dropped == name && !self_closing {
                *depth += 1;
            }
            return;
        }
        if DROPPED.contains(&name) {
            if !self_closing {
                self.dropped = Some((name.to_owned(), 1));
            }
            return;
        }
        match name {
            "br" => self.out.push('\n'),
            "hr" => self.block_break(),
            "li" => {
                self.line_break();
                self.out.push_str("- ");
            }
            "td" | "th" if !self.out.ends_with(['\n', ' ']) && !self.out.is_empty() => {
                self.out.push(' ');
            }
            "pre" => {
                self.block_break();
                self.pre += 1;
            }
            "a" => {
                if let Some(href) = attribute(tag, "href") {
                    self.link = Some((href, self.out.len()));
                }
            }
            "img" => {
                if let Some(alt) = attribute(tag, "alt").filter(|a| !a.trim().is_empty()) {
                    self.text(&format!(" [image: {}] ", alt.trim()));
                }
            }
            _ if heading_level(name).is_some() => {
                self.block_break();
                let level = heading_level(name).unwrap_or(1);
                self.out.push_str(&"#".repeat(level));
                self.out.push(' ');
            }
            _ if BLOCKS.contains(&name) => self.block_break(),
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if let Some((dropped, depth)) = &mut self.dropped {
            if dropped == name {
                *depth -= 1;
                if *depth == 0 {
                    self.dropped = None;
                }
            }
            return;
        }
        match name {
            "pre" => {
                self.pre = self.pre.saturating_sub(1);
                self.block_break();
            }
            "a" => {
                if let Some((href, start)) = self.link.take() {
                    // A block break inside the link may have trimmed the
                    // text back past where it started.
                    let mut start = start.min(self.out.len());
                    while !self.out.is_char_boundary(start) {
                        start -= 1;
                    }
                    let text = self.out[start..].trim().to_owned();
                    let keep = !text.is_empty()
                        && !href.starts_with('#')
                        && !href.to_ascii_lowercase().starts_with("javascript:");
                    if keep {
                        self.out.truncate(start);
                        self.out.push_str(&format!("[{text}]({href})"));
                    }
                }
            }
            "li" | "tr" | "dt" | "dd" => self.line_break(),
            _ if heading_level(name).is_some() || BLOCKS.contains(&name) => self.block_break(),
            _ => {}
        }
    }

    fn line_break(&mut self) {
        trim_end_spaces(&mut self.out);
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn block_break(&mut self) {
        trim_end_spaces(&mut self.out);
        if self.out.is_empty() {
            return;
        }
        while !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }
}

fn trim_end_spaces(text: &mut String) {
    while text.ends_with(' ') {
        text.pop();
    }
}

fn heading_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', digit @ b'1'..=b'6'] => Some(usize::from(digit - b'0')),
        _ => None,
    }
}

/// Where the tag starting `rest` ends (its `>`), quotes respected.
fn tag_end(rest: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (index, c) in rest.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(index),
            _ => {}
        }
    }
    None
}

/// The content of a raw-text element up to `</name` (any case), and what
/// follows its closing tag. Reads only up to that tag: a page of many
/// short elements stays linear.
fn raw_text<'a>(after: &'a str, name: &str) -> (&'a str, &'a str) {
    let closing = after.match_indices("</").map(|(at, _)| at).find(|at| {
        after.as_bytes()[at + 2..]
            .get(..name.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(name.as_bytes()))
    });
    match closing {
        Some(start) => {
            let rest = &after[start..];
            let end = rest.find('>').map_or(rest.len(), |e| e + 1);
            (&after[..start], &rest[end..])
        }
        None => (after, ""),
    }
}

/// The value of attribute `name` of `tag`, entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(name) {
        let at = from + found;
        from = at + name.len();
        let before = lower[..at].chars().next_back();
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let rest = tag[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or_default(),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or_default()
                .trim_end_matches('/'),
        };
        return Some(decode_entities(value).trim().to_owned());
    }
    None
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map_or(rest.len(), |e| e + 1);
        let entity = &rest[1..end];
        match decode_entity(entity) {
            Some(decoded) => {
                out.push(decoded);
                rest = rest[end..].strip_prefix(';').unwrap_or(&rest[end..]);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_entity(entity: &str) -> Option<char> {
    if let Some(number) = entity.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| !c.is_control() || c.is_whitespace());
    }
    Some(match entity {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "laquo" => '«',
        "raquo" => '»',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "middot" => '·',
        "bull" => '•',
        "deg" => '°',
        "times" => '×',
        "euro" => '€',
        _ => return None,
    })
}

/// Lines trimmed, at most one empty line in a row, none at the ends.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut empty_lines = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            empty_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if empty_lines > 0 { "\n\n" } else { "\n" });
        }
        empty_lines = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_becomes_readable_text() {
        let page = to_text(
            r#"<!DOCTYPE html><html><head><title>The  Rust &amp; WASI page</title>
            <style>body { color: red }</style><script>alert("<p>no</p>")</script></head>
            <body><nav><a href="/">Home</a> <ul><li>Menu</li></ul></nav>
            <h1>Rust</h1><p>A <b>systems</b> language, see <a href="https://www.rust-lang.org/">the site</a>.
            <p>Second&nbsp;paragraph &#x2014; with &lt;tags&gt;.</p>
            <ul><li>one</li><li>two <a href='#top'>top</a></li></ul>
            <pre>let x = 1;
    let y = 2;</pre><!-- a comment <p>hidden</p> -->
            <img src="x.png" alt="A crab"> 3 < 4</body></html>"#,
        );
        assert_eq!(page.title.as_deref(), Some("The Rust & WASI page"));
        assert_eq!(
            page.text,
            "# Rust\n\nA systems language, see [the site](https://www.rust-lang.org/).\n\n\
             Second paragraph — with <tags>.\n\n- one\n- two top\n\n\
             let x = 1;\n    let y = 2;\n\n[image: A crab] 3 < 4"
        );
    }

    #[test]
    fn broken_markup_never_fails() {
        for html in [
            "<",
            "<p",
            "<a href=\"x",
            "&#xZZ;",
            "&",
            "</",
            "<!--",
            "<script>",
            "<nav><nav></nav>x",
        ] {
            let _ = to_text(html);
        }
        assert_eq!(to_text("a &unknown; b").text, "a &unknown; b");
        assert_eq!(to_text("<nav><nav>in</nav>still</nav>out").text, "out");
        // A block break inside a link trims back past its start.
        let _ = to_text("<pre> <a href=x></pre></a>é");
        let _ = to_text("é<pre> <a href=x></pre></a>");
        assert_eq!(
            to_text("<TITLE>Up</Title><SCRIPT>x</script>text")
                .title
                .as_deref(),
            Some("Up")
        );
    }

    #[test]
    fn many_raw_elements_stay_linear() {
        let html = "<title></title><script></script>".repeat(200_000);
        assert_eq!(to_text(&html).text, "");
    }
}
