from strongroom.cli.start import main

main()
