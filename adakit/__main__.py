from adakit.cli import app

app(prog_name="adakit")
