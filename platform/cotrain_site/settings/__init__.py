"""Settings modules: `base` reads every environment variable; `dev`, `test` and
`production` only choose between behaviours. `.env.example` lists the variables."""
