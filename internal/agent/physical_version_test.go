package agent

import (
	"strings"
	"testing"

	"github.com/myaas/myaas/internal/agentapi"
)

func TestBackupVersionAgainstTheImage(t *testing.T) {
	for _, tc := range []struct {
		backup, server string
		refused        bool
	}{
		{"10.11.6-MariaDB", "mariadbd  Ver 10.11.6-MariaDB-0+deb12u1", false},
		{"10.11.4-MariaDB", "mariadbd  Ver 10.11.6-MariaDB-0+deb12u1", false},
		{"10.6.18-MariaDB", "mariadbd  Ver 10.11.6-MariaDB-0+deb12u1", false},
		{"10.11.9-MariaDB", "mariadbd  Ver 10.11.6-MariaDB-0+deb12u1", true},
		{"11.4.2-MariaDB", "mariadbd  Ver 10.11.6-MariaDB-0+deb12u1", true},
		{"", "mariadbd  Ver 10.11.6-MariaDB-0+deb12u1", false},
	} {
		err := checkBackupVersion(tc.backup, tc.server, "shop.xb")
		if !tc.refused {
			if err != nil {
				t.Errorf("%s on %s: %v", tc.backup, tc.server, err)
			}
			continue
		}
		r := failureReport(t.Context(), err)
		if r.Reason != agentapi.ReasonBackupFromNewerServer || !strings.Contains(r.Message, tc.backup) || !strings.Contains(r.Message, "10.11.6") {
			t.Errorf("%s on %s: %+v, want %s naming both versions", tc.backup, tc.server, r, agentapi.ReasonBackupFromNewerServer)
		}
	}
}
