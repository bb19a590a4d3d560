// Lets a library folder exist before its first source file.
