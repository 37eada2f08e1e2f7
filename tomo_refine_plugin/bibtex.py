# -*- coding: utf-8 -*-
"""
@article{Zivanov2022,
  title = {A Bayesian approach to single-particle electron cryo-tomography in RELION-4.0},
  author = {Zivanov, Jasenko and Ot{\'o}n, Joaqu{\'\i}n and Ke, Zunlong and von Kügelgen, Andriko and Pyle, Euan and Qu, Kun and Morado, Dustin and Castaño-Díez, Daniel and Zanetti, Giulia and Bharat, Tanmay A. M. and Briggs, John A. G. and Scheres, Sjors H. W.},
  journal = {eLife},
  volume = {11},
  pages = {e83724},
  year = {2022},
  doi = {10.7554/eLife.83724}
}

@article{Zivanov2019,
  title = {A Bayesian approach to beam-induced motion correction in cryo-EM single-particle analysis},
  author = {Zivanov, Jasenko and Nakane, Takanori and Scheres, Sjors H. W.},
  journal = {IUCrJ},
  volume = {6},
  number = {1},
  pages = {5--17},
  year = {2019},
  doi = {10.1107/S205225251801463X}
}

@article{Burt2024,
  title = {An image processing pipeline for electron cryo-tomography in RELION-5},
  author = {Burt, Alister and Toader, Bogdan and Warshamanage, Rangana and von Kügelgen, Andriko and Pyle, Euan and Zivanov, Jasenko and Kimanius, Dari and Bharat, Tanmay A. M. and Scheres, Sjors H. W.},
  journal = {FEBS Open Bio},
  volume = {14},
  number = {11},
  pages = {1788--1804},
  year = {2024},
  doi = {10.1002/2211-5463.13873}
}
"""
