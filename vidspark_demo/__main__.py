from vidspark_demo.data import main

main()
