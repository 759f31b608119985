package main

import (
	"os/exec"
	"strconv"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// dbClient is an engine's command-line client as `connect` runs it: here, or in a pod with the
// engine's image. The password goes in the environment, never on a command line `ps` shows.
type dbClient struct {
	// binaries are the client's names, preferred first.
	binaries []string
	// args are the login options for a client here, before the user's arguments.
	args func(c connection) []string
	// env is the login's environment for a client here.
	env func(c connection) []string
	// podScript runs the client in a pod: see mysqlPodScript.
	podScript string
	// podEnv are the pod's variables and the keys of the instance's Secret they come from.
	podEnv [][2]string
}

func clientFor(engine myaasv1.EngineType) dbClient {
	switch engine {
	case myaasv1.EnginePostgreSQL:
		return psqlClient
	case myaasv1.EngineMySQL:
		c := mysqlClient
		c.binaries = []string{"mysql"}
		return c
	}
	return mysqlClient
}

func (cl dbClient) local() string {
	for _, b := range cl.binaries {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	return ""
}

var mysqlClient = dbClient{
	binaries:  []string{"mariadb", "mysql"},
	args:      func(c connection) []string { return clientArgsFor(c, nil) },
	env:       func(c connection) []string { return []string{"MYSQL_PWD=" + c.Password} },
	podScript: mysqlPodScript,
	podEnv: [][2]string{
		{"MYAAS_HOST", "host"}, {"MYAAS_PORT", "port"}, {"MYAAS_USERNAME", "username"},
		{"MYAAS_DATABASE", "database"}, {"MYSQL_PWD", "password"},
	},
}

// clientArgsFor are the MySQL clients' login options.
func clientArgsFor(c connection, extra []string) []string {
	args := []string{"--host=" + c.Host, "--port=" + strconv.Itoa(c.Port), "--user=" + c.Username, "--protocol=TCP"}
	if c.Database != "" {
		args = append(args, "--database="+c.Database)
	}
	return append(args, extra...)
}

// psqlClient logs in through libpq's environment: nothing of the login is on the command line,
// and the user's arguments (-c, -f, \set …) are psql's own.
var psqlClient = dbClient{
	binaries: []string{"psql"},
	args:     func(connection) []string { return nil },
	env: func(c connection) []string {
		return []string{"PGHOST=" + c.Host, "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=" + c.Username,
			"PGDATABASE=" + c.Database, "PGPASSWORD=" + c.Password}
	},
	podScript: psqlPodScript,
	podEnv: [][2]string{
		{"PGHOST", "host"}, {"PGPORT", "port"}, {"PGUSER", "username"}, {"PGDATABASE", "database"}, {"PGPASSWORD", "password"},
	},
}

// mysqlPodScript waits for the first line on stdin before it starts the client: it is sent once
// the attach is established, so no output of a short query is lost before the attach. With the
// instance's CA (ca.crt of its Secret) the client verifies the server's certificate and name: it
// reaches the server by the Service's name, which the certificate is issued for. Network plugins
// let a new pod through NetworkPolicies only once they have seen its address: the client waits,
// a few seconds at most, until the server answers at all (ping succeeds even when a login is refused).
const mysqlPodScript = `read -r _ || exit 1
if command -v mariadb >/dev/null 2>&1; then c=mariadb a=mariadb-admin; else c=mysql a=mysqladmin; fi
i=0
while [ $i -lt 40 ] && ! "$a" --host="$MYAAS_HOST" --port="$MYAAS_PORT" --protocol=TCP --connect-timeout=1 ping >/dev/null 2>&1; do
  i=$((i+1)); sleep 0.25
done
if [ -s /etc/myaas/tls/ca.crt ]; then
  if [ "$c" = mariadb ]; then set -- --ssl --ssl-verify-server-cert "$@"; else set -- --ssl-mode=VERIFY_IDENTITY "$@"; fi
  set -- --ssl-ca=/etc/myaas/tls/ca.crt "$@"
fi
exec "$c" --host="$MYAAS_HOST" --port="$MYAAS_PORT" --user="$MYAAS_USERNAME" --database="$MYAAS_DATABASE" --protocol=TCP "$@"`

// psqlPodScript is mysqlPodScript for psql: pg_isready answers once the server does (exit 0 or
// 1, "rejecting" counts), and verify-full checks the certificate and the Service's name.
const psqlPodScript = `read -r _ || exit 1
i=0
while [ $i -lt 40 ]; do
  pg_isready -t 1 >/dev/null 2>&1; [ $? -le 1 ] && break
  i=$((i+1)); sleep 0.25
done
if [ -s /etc/myaas/tls/ca.crt ]; then
  export PGSSLMODE=verify-full PGSSLROOTCERT=/etc/myaas/tls/ca.crt
fi
exec psql "$@"`
