package engine

func init() { register(MySQL{}) }

// MySQL is MySQL 8.0 and 8.4.
type MySQL struct{}

func (MySQL) Name() string                       { return "mysql" }
func (MySQL) DefaultVersion() string             { return "8.4" }
func (MySQL) DefaultImage(version string) string { return "mysql:" + version }
func (MySQL) Port() int32                        { return 3306 }
