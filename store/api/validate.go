package api

import "github.com/kmb-db/kmb/internal/apirules"

// validTenant reports whether id matches [a-z0-9][a-z0-9_-]{0,63}.
func validTenant(id string) bool { return apirules.ValidTenant(id) }

// validKey reports whether key is non-empty UTF-8 free of control characters.
func validKey(key string) bool { return apirules.ValidKey(key) }
