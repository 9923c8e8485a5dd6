// Package manual renders the man-page markdown of the binaries (the source
// go-md2man turns into spartan(8) and spartanctl(8)) as the plain text of
// their -h and help output, so the page and the usage text cannot differ:
// there is only one text.
package manual

import (
	"regexp"
	"strings"
)

// Text renders the whole page, without the go-md2man title block.
func Text(md string) string {
	return render(body(md), 0)
}

// Command renders the "## NAME ..." subsection whose first word is name
// (a spartanctl command), its heading included, or "" if there is none.
// A "# TITLE" section is found by its whole title.
func Command(md, name string) string {
	lines, ok := subsection(body(md), name)
	if !ok {
		return ""
	}
	return render(lines, 2)
}

// Terms returns the flags (words starting with "-") of the definition-list
// terms ("**-config** *PATH*") of the "## name" subsection or "# NAME"
// section, or of the whole page when name is "". Tests compare them with the flags a binary accepts.
func Terms(md, name string) []string {
	lines := body(md)
	if name != "" {
		var ok bool
		if lines, ok = subsection(lines, name); !ok {
			return nil
		}
	}
	var out []string
	for i, l := range lines {
		if i+1 < len(lines) && strings.HasPrefix(lines[i+1], ":") && strings.HasPrefix(l, "**-") {
			w := strings.Fields(plain(l))[0]
			out = append(out, strings.TrimRight(w, ","))
		}
	}
	return out
}

// Commands returns the first word of every "## " subsection heading.
func Commands(md string) []string {
	var out []string
	for _, l := range body(md) {
		if strings.HasPrefix(l, "## ") {
			out = append(out, strings.Fields(plain(l[3:]))[0])
		}
	}
	return out
}

// body drops the title block: the first line and its "===" underline.
func body(md string) []string {
	lines := strings.Split(strings.TrimRight(md, "\n"), "\n")
	if len(lines) > 1 && strings.HasPrefix(lines[1], "===") {
		lines = lines[2:]
	}
	return lines
}

// subsection returns the lines of the "## " subsection whose first word is
// name, or of the "# " section whose whole title is name, heading included.
func subsection(lines []string, name string) ([]string, bool) {
	for i, l := range lines {
		level := 0
		switch {
		case strings.HasPrefix(l, "## ") && strings.Fields(plain(l[3:]))[0] == name:
			level = 2
		case strings.HasPrefix(l, "# ") && plain(l[2:]) == name:
			level = 1
		default:
			continue
		}
		end := i + 1
		for end < len(lines) && !isHeading(lines[end], level) {
			end++
		}
		return lines[i:end], true
	}
	return nil, false
}

// isHeading reports whether l is a heading of level or above.
func isHeading(l string, level int) bool {
	return strings.HasPrefix(l, "# ") || (level == 2 && strings.HasPrefix(l, "## "))
}

// render indents as man(1) does: section headings flush left, subsection
// headings and paragraphs by 4, definitions and code by 8 (less the outdent
// when a subsection is printed alone).
func render(lines []string, outdent int) string {
	var b strings.Builder
	pad := func(n int) string { return strings.Repeat(" ", max(0, n-outdent)) }
	inCode, inDef := false, false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "```"):
			inCode = !inCode
		case inCode:
			b.WriteString(pad(8) + l + "\n")
		case strings.HasPrefix(l, "## "):
			b.WriteString(pad(2) + plain(l[3:]) + "\n")
			inDef = false
		case strings.HasPrefix(l, "# "):
			b.WriteString(plain(l[2:]) + "\n")
			inDef = false
		case strings.TrimSpace(l) == "":
			b.WriteString("\n")
		case strings.HasPrefix(l, ":   "):
			b.WriteString(pad(8) + plain(l[4:]) + "\n")
			inDef = true
		case inDef && strings.HasPrefix(l, "    "):
			b.WriteString(pad(8) + plain(strings.TrimSpace(l)) + "\n")
		default:
			inDef = false
			b.WriteString(pad(4) + plain(strings.TrimSpace(l)) + "\n")
		}
	}
	return strings.TrimLeft(b.String(), "\n")
}

var escaped = regexp.MustCompile(`\\(.)`)

// plain strips the inline markup: emphasis, code spans and backslash
// escapes. Code spans are kept verbatim.
func plain(s string) string {
	s = strings.ReplaceAll(s, `\*`, "\x00") // a literal asterisk survives the emphasis stripping
	parts := strings.Split(s, "`")
	for i := range parts {
		if i%2 == 0 {
			p := strings.ReplaceAll(parts[i], "**", "")
			p = strings.ReplaceAll(p, "*", "")
			parts[i] = escaped.ReplaceAllString(p, "$1")
		}
	}
	s = strings.ReplaceAll(strings.Join(parts, ""), "\x00", "*")
	// A trailing double space is a markdown line break, noise in text.
	return strings.TrimRight(s, " ")
}
