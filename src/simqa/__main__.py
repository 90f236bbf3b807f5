from simqa.cli import main

main()
