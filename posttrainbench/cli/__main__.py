from posttrainbench.cli.main import main

main()
