from serumrnn.cli.app import main

main()
