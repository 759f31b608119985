package agent

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// systemSchemas are the engines' own databases: the application user gets no grant on them.
var systemSchemas = []string{"mysql", "performance_schema", "sys", "information_schema"}

// instanceGrants are what the application user gets besides its own database: the template's
// databases, found in the datadir, and the instance's extra privileges.
func instanceGrants(o startOptions) (engine.Grants, error) {
	if err := engine.ValidatePrivileges(o.extraPrivileges); err != nil {
		return engine.Grants{}, err
	}
	dbs, err := datadirDatabases(o.datadir)
	if err != nil {
		return engine.Grants{}, err
	}
	return engine.Grants{Databases: dbs, Extra: o.extraPrivileges}, nil
}

// datadirDatabases lists the databases of a datadir before its server starts, so that the init
// file grants them and no client ever sees the instance without its grants: each is a directory
// named in the engines' filename encoding.
func datadirDatabases(datadir string) ([]string, error) {
	entries, err := os.ReadDir(datadir)
	if err != nil {
		return nil, fmt.Errorf("list the databases in %s: %w", datadir, err)
	}
	var dbs []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() || strings.HasPrefix(n, "#") || strings.HasPrefix(n, ".") || n == "lost+found" {
			continue
		}
		name, ok := decodeFilename(n)
		if !ok {
			log.Printf("directory %s of the datadir is not a database name the agent can decode: the application user gets no grant on it", n)
			continue
		}
		if !slices.Contains(systemSchemas, name) {
			dbs = append(dbs, name)
		}
	}
	return dbs, nil
}

// decodeFilename decodes the engines' file names for databases: characters outside [0-9A-Za-z_]
// are written @XXXX, their code point in hex. The two-character forms some letters get are not
// decoded (false).
func decodeFilename(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			b.WriteByte(s[i])
			continue
		}
		if i+5 > len(s) {
			return "", false
		}
		r, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
		if err != nil {
			return "", false
		}
		b.WriteRune(rune(r))
		i += 4
	}
	return b.String(), true
}

// listAccounts reads every account and role of the server.
func listAccounts(ctx context.Context, db *sql.DB) ([]engine.Account, error) {
	rows, err := db.QueryContext(ctx, "SELECT User, Host FROM mysql.user")
	if err != nil {
		return nil, fmt.Errorf("list the accounts: %w", err)
	}
	defer rows.Close()
	var accounts []engine.Account
	for rows.Next() {
		var a engine.Account
		if err := rows.Scan(&a.User, &a.Host); err != nil {
			return nil, err
		}
		accounts = append(accounts, a)
	}
	return accounts, rows.Err()
}

// dropForeignAccounts drops every account but the engine's own and those keep names ("user" or
// "user@host"): the initialisation's extra root and anonymous logins, and every account the
// dumps or the post-import SQL created, whose passwords would work on every clone. Root is
// never kept but on the pod's socket. It returns how many of the dropped accounts are not in
// initial, those the initialisation made.
func dropForeignAccounts(ctx context.Context, db *sql.DB, keep []string, initial []engine.Account) (int, error) {
	accounts, err := listAccounts(ctx, db)
	if err != nil {
		return 0, err
	}
	dropped := 0
	for _, a := range accounts {
		kept := a.User != "root" && slices.ContainsFunc(keep, func(p string) bool { return engine.MatchAccount(p, a) })
		if engine.IsSystemAccount(a) || kept {
			continue
		}
		var err error
		for _, stmt := range engine.DropAccountSQL(a) {
			if _, err = db.ExecContext(ctx, stmt); err == nil {
				break
			}
		}
		if err != nil {
			return dropped, fmt.Errorf("drop account %s: %w", a, err)
		}
		if !slices.Contains(initial, a) {
			dropped++
		}
	}
	return dropped, nil
}

// markAccountsDropped records in the datadir that no account of the dumps is left in it.
func markAccountsDropped(datadir string) error {
	if err := os.WriteFile(filepath.Join(datadir, agentapi.AccountsDroppedFile), nil, 0o640); err != nil {
		return fmt.Errorf("record the dropped accounts: %w", err)
	}
	return nil
}

func accountsDropped(datadir string) bool {
	_, err := os.Stat(filepath.Join(datadir, agentapi.AccountsDroppedFile))
	return err == nil
}

// dropLegacyAccounts drops, once the server answers, the accounts a revision imported by an
// older version still holds: every one but the engine's own, the application user and the
// operator's. The template's keepAccounts are not known here: such a revision never had them.
func dropLegacyAccounts(ctx context.Context, datadir, socket string, c engine.Credentials) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = "root", c.RootPassword, "unix", socket
	cfg.Timeout = 2 * time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		log.Printf("accounts of an older revision not dropped: %v", err)
		return
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if err = db.PingContext(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log.Printf("accounts of an older revision not dropped: %v", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	n, err := dropForeignAccounts(ctx, db, []string{c.Username, c.AdminUsername}, nil)
	if err == nil {
		err = markAccountsDropped(datadir)
	}
	if err != nil {
		log.Printf("accounts of an older revision not dropped: %v", err)
		return
	}
	log.Printf("dropped %d accounts an older import left in the revision", n)
}
