from simqa.cli.app import main

main()
