package bootstrap

import (
	"io"
	"log/slog"
	"net/url"
	"strings"
)

// NewLogger builds the process logger: JSON or text on w at level. Every string attribute
// that looks like a URL with a password is redacted on the way out, a last line of defence
// behind the rule that secrets are never logged.
func NewLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	switch strings.ToLower(a.Key) {
	case "password", "token", "api_token", "authorization", "secret":
		return slog.String(a.Key, "[redacted]")
	}
	if a.Value.Kind() == slog.KindString {
		if s := a.Value.String(); strings.Contains(s, "://") && strings.Contains(s, "@") {
			return slog.String(a.Key, redactURLsIn(s))
		}
	}
	return a
}

// redactURLsIn replaces the password of every URL-looking word of s, and of every URL of
// a comma-separated list (AMQP_URL naming a cluster's nodes).
func redactURLsIn(s string) string {
	words := strings.Fields(s)
	changed := false
	for i, w := range words {
		if !strings.Contains(w, "://") {
			continue
		}
		parts := strings.Split(w, ",")
		for j, part := range parts {
			trimmed := strings.Trim(part, `"'();`)
			if u, err := url.Parse(trimmed); err == nil && u.User != nil {
				if _, has := u.User.Password(); has {
					parts[j] = strings.Replace(part, trimmed, u.Redacted(), 1)
					changed = true
				}
			}
		}
		words[i] = strings.Join(parts, ",")
	}
	if !changed {
		return s
	}
	return strings.Join(words, " ")
}
