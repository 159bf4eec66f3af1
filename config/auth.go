package config

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
)

// decodeUsers decodes the user blocks of the nats block:
//
//	user "admin" { password_env = "SLUICE_ADMIN_PASSWORD"  role = "admin" }
//	user "app"   { password = "..."                        role = "publish" }
func (d *decoder) decodeUsers(c *hcl.BodyContent) []User {
	var users []User
	blocks := c.Blocks.ByType()["user"]
	if len(blocks) > 0 {
		if a := c.Attributes["url"]; a != nil {
			d.errorf(blocks[0].DefRange, "Users with an external server",
				"user blocks configure the embedded NATS server, which does not run when url is set (at %s). Put the credentials of the external server in url instead, such as \"nats://user:password@host:4222\".", a.Expr.Range())
			return nil
		}
	}
	seen := map[string]*hcl.Block{}
	for _, b := range blocks {
		uc := d.content(b.Body, userSchema)
		u := User{Name: b.Labels[0]}
		ok := d.label(b, "user")
		if first, dup := seen[u.Name]; dup && ok {
			d.errorf(b.LabelRanges[0], "Duplicate user name",
				"A user named %q was already declared at %s. User names must be unique.", u.Name, first.LabelRanges[0])
			ok = false
		} else if ok {
			seen[u.Name] = b
		}
		if a := uc.Attributes["role"]; a != nil {
			if v, vok := d.str(a); vok {
				switch v {
				case RoleAdmin, RolePublish:
					u.Role = v
				default:
					d.errorf(a.Expr.Range(), "Invalid role",
						`role must be "admin" (everything) or "publish" (publish events to the bindings' subjects and read status, nothing else); got %q.`, v)
					ok = false
				}
			} else {
				ok = false
			}
		} else {
			ok = false // missing: HCL said so
		}
		pw, env := uc.Attributes["password"], uc.Attributes["password_env"]
		if pw == nil && env == nil {
			d.errorf(b.LabelRanges[0], "Missing password",
				`User %q needs a password: password = "..." or, to keep it out of the file, password_env = "NAME_OF_AN_ENVIRONMENT_VARIABLE".`, u.Name)
			ok = false
		} else if v, name, pok := d.password(pw, env, fmt.Sprintf("user %q", u.Name)); pok {
			u.Password, u.PasswordEnv = v, name
		} else {
			ok = false
		}
		if ok {
			users = append(users, u)
		}
	}
	return users
}

// password decodes a password given as password = "..." or as
// password_env = "VARIABLE" (read now), exactly one of them set; whose
// names the owner in messages.
func (d *decoder) password(pw, env *hcl.Attribute, whose string) (value, envName string, ok bool) {
	switch {
	case pw != nil && env != nil:
		d.errorf(env.NameRange, "Conflicting password settings",
			"The %s sets both password (at %s) and password_env; set one.", whose, pw.NameRange)
	case pw != nil:
		if v, vok := d.secretStr(pw); !vok {
			return "", "", false
		} else if v == "" {
			d.errorf(pw.Expr.Range(), "Empty password", "The password of the %s is empty.", whose)
		} else {
			return v, "", true
		}
	case env != nil:
		if name, vok := d.str(env); !vok {
			return "", "", false
		} else if !validEnvName(name) {
			d.errorf(env.Expr.Range(), "Invalid environment variable name",
				"%q is not a valid environment variable name: use letters, digits and '_', not starting with a digit.", name)
		} else if v := os.Getenv(name); v == "" {
			d.errorf(env.Expr.Range(), "Missing password",
				"The password of the %s comes from the environment variable %s, which is not set or empty.", whose, name)
		} else {
			return v, name, true
		}
	}
	return "", "", false
}

// String hides the password.
func (u User) String() string { return fmt.Sprintf("%s (%s)", u.Name, u.Role) }
