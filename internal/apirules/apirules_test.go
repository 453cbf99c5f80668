package apirules

import "testing"

func TestValidTenant(t *testing.T) {
	for id, want := range map[string]bool{
		"acme": true, "a": true, "0": true, "bench-0": true, "a_b-c": true,
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":  true, // 64
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": false,
		"": false, "Acme": false, "-acme": false, "_acme": false, "ac/me": false, "ac me": false, "acmé": false,
	} {
		if got := ValidTenant(id); got != want {
			t.Errorf("ValidTenant(%q) = %v", id, got)
		}
	}
}

func TestValidKey(t *testing.T) {
	for key, want := range map[string]bool{
		"k": true, "user-1": true, "a/b c?d": true, "ünïcødé": true, `"\`: true,
		"": false, "a\nb": false, "\x00": false, "\x7f": false, "\xff\xfe": false,
	} {
		if got := ValidKey(key); got != want {
			t.Errorf("ValidKey(%q) = %v", key, got)
		}
	}
}
