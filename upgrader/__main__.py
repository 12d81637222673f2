from upgrader.cli.main import console

console()
