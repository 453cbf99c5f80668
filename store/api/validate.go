package api

import (
	"unicode/utf8"

	"github.com/kmb-db/kmb/auth"
)

// validTenant reports whether id matches [a-z0-9][a-z0-9_-]{0,63}.
func validTenant(id string) bool { return auth.ValidTenant(id) }

// validKey reports whether key is non-empty UTF-8 free of control characters.
func validKey(key string) bool {
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
