from catalogcap.cli import main

main()
