package apirules

import "unicode/utf8"

// ValidTenant reports whether id matches [a-z0-9][a-z0-9_-]{0,63}. A valid
// id needs no escaping in a URL path.
func ValidTenant(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidKey reports whether key is non-empty UTF-8 free of control
// characters (below U+0020, and U+007F).
func ValidKey(key string) bool {
	if key == "" || !utf8.ValidString(key) {
		return false
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
