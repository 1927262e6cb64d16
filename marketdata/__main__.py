from marketdata.cli import main

main()
