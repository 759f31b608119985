package engine

func init() { register(MariaDB{}) }

// MariaDB is MariaDB 10.6+ and 11.x.
type MariaDB struct{}

func (MariaDB) Name() string                       { return "mariadb" }
func (MariaDB) DefaultVersion() string             { return "11.4" }
func (MariaDB) DefaultImage(version string) string { return "mariadb:" + version }
func (MariaDB) Port() int32                        { return 3306 }
