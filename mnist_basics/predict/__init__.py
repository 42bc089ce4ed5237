"""`python -m mnist_basics predict`: the trained models on pictures of your own."""
