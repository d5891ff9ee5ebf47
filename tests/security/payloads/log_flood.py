import sys

line = "flood " * 20 + "\n"
for i in range(400_000):  # about 50 MB
    sys.stdout.write(f"{i} {line}")
print("the last line of the flood", flush=True)
